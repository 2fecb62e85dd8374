//! The microvm backend: containers in virtual machines with their own
//! guest kernel: a lone container in a VM of its own, and a Kubernetes pod
//! (as Kata runs one) in one VM for all its containers.
//!
//! At Create, the container's root filesystem becomes an ext4 disk image
//! ([`disk`]), a VMM process ([`hypervisor`] chooses Strata's built-in one
//! or QEMU) boots the guest kernel with an initramfs whose PID 1 is
//! Strata's agent (`strata-agent`, [`vm`]), and the shim talks to the agent
//! over a virtio console port ([`client`]): the agent mounts the
//! disk and runs the container's processes; their output and exits come
//! back as frames that [`stdio`] delivers to containerd's FIFOs. Delete
//! powers the VM off and removes its files; a VM that dies ends its
//! processes with exit 137 and a reason in the log.
//!
//! A pod's sandbox (pause) container, marked by containerd's CRI
//! annotations ([`spec::role`]), boots the pod's VM, sized by the pod's
//! annotations ([`spec::pod_memory_mib`], [`spec::pod_vcpus`]), with spare
//! disks; the pod's app containers find that VM in a registry ([`pod`]),
//! their root filesystems go onto free spare disks, and the agent runs
//! them beside the sandbox. The containers of a pod share the VM's network
//! (its loopback: the VM has no network device, so a pod has no external
//! networking), IPC and UTS namespaces; each has its own PID namespace.
//! Deleting an app container removes it from the VM and frees its disk;
//! deleting the sandbox powers the VM off.
//!
//! Inside the guest, the agent runs each container's processes chrooted
//! into its mounted disk, in a PID namespace of its own (init is PID 1),
//! with the spec's user, environment, working directory and terminal; the
//! VM is the isolation boundary, so capabilities, seccomp and the other
//! namespaces of the spec are not applied in the guest. Only kernel
//! filesystems of the spec's mounts reach the guest; bind mounts of host
//! paths are skipped with a warning.
//!
//! `hypervisor = "auto"` means the built-in VMM where the host has
//! hardware virtualization (`strata_vmm::check`), QEMU with TCG otherwise;
//! the built-in VMM runs as this binary re-executed with [`VMM_ARG`].

mod client;
mod container;
mod disk;
mod hypervisor;
mod pod;
mod process;
mod spec;
mod stdio;
mod vm;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use strata_agent::protocol::{INIT, ROOT_DISK};
use strata_backend::{Backend, Container, CreateRequest, Error, Result};
use strata_config::MicrovmOptions;

use crate::client::AgentClient;
use crate::container::{MicrovmContainer, Place};
use crate::pod::Pod;
use crate::process::MicrovmProcess;
use crate::spec::Role;
use crate::vm::{Vm, VmConfig};

/// How long the guest may take from the VMM's start until its agent
/// answers; QEMU's TCG on a busy host is slow.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// The argument with which a binary that embeds this backend must run
/// `strata_vmm::command::main` on the arguments after it: the backend
/// starts the built-in VMM as `/proc/self/exe vmm ...`.
pub const VMM_ARG: &str = "vmm";

/// Creates microVM containers for a class.
pub struct MicrovmBackend {
    options: MicrovmOptions,
}

impl MicrovmBackend {
    /// A backend running VMs shaped by `options`.
    pub fn new(options: MicrovmOptions) -> MicrovmBackend {
        MicrovmBackend { options }
    }

    /// Boots a VM for a lone container or a pod's sandbox (`pod`) and
    /// brings the container up to Created in it.
    async fn launch(&self, request: CreateRequest, pod: bool) -> Result<Box<dyn Container>> {
        let started = Instant::now();
        let monitor = hypervisor::choose(self.options.hypervisor)?;
        let kernel = monitor.kernel(&self.options);
        require("kernel", &kernel)?;
        require("initramfs", &self.options.initramfs)?;
        let (memory_mib, vcpus) = if pod {
            log::info!(
                "vm {}: a pod's sandbox; its CRI annotations: {:?}",
                request.id,
                spec::cri_annotations(&request.spec)
            );
            (
                spec::pod_memory_mib(&request.spec, self.options.memory_mib)?,
                spec::pod_vcpus(&request.spec, self.options.vcpus)?,
            )
        } else {
            (
                spec::memory_mib(&request.spec, self.options.memory_mib)?,
                self.options.vcpus,
            )
        };
        // Checked before anything is made.
        spec::create_call(&request.spec, &request.id, ROOT_DISK, false)?;
        let disk = request.state_dir.join(vm::DISK);
        if let Err(e) = disk::make(&request.rootfs()?, &disk).await {
            let _ = std::fs::remove_file(&disk);
            return Err(e);
        }
        let config = VmConfig {
            id: request.id.clone(),
            monitor,
            vcpus,
            memory_mib,
            kernel,
            initramfs: self.options.initramfs.clone(),
            state_dir: request.state_dir.clone(),
            spares: if pod { vm::SPARES } else { 0 },
        };
        let vm = match Vm::launch(&config) {
            Ok(vm) => Arc::new(vm),
            Err(e) => {
                let _ = vm::cleanup(&request.state_dir);
                return Err(e);
            }
        };
        match self.boot(&request, &vm, started).await {
            Ok((client, init)) => {
                log::info!("vm {}: created in {:?}", request.id, started.elapsed());
                if pod {
                    pod::register(
                        &request.id,
                        Pod::new(vm.clone(), client.clone(), request.state_dir.clone()),
                    );
                }
                Ok(Box::new(MicrovmContainer {
                    id: request.id,
                    vm,
                    client,
                    init,
                    place: Place::Owner {
                        pod,
                        state_dir: request.state_dir,
                    },
                }))
            }
            Err(e) => {
                vm.stop(Duration::ZERO).await;
                let _ = vm::cleanup(&request.state_dir);
                Err(e)
            }
        }
    }

    /// Waits for the agent of a new VM and creates its first container.
    async fn boot(
        &self,
        request: &CreateRequest,
        vm: &Vm,
        started: Instant,
    ) -> Result<(Arc<AgentClient>, MicrovmProcess)> {
        let connected = tokio::time::timeout(BOOT_TIMEOUT, async {
            AgentClient::connect(vm.connect().await?, &request.id).await
        });
        let (client, kernel) = match connected.await {
            Ok(connected) => connected?,
            Err(_) => {
                return Err(Error::Process(format!(
                    "vm {}: the guest agent did not answer within {BOOT_TIMEOUT:?}; \
                     the guest's console is in the shim's log",
                    request.id
                )))
            }
        };
        log::info!(
            "vm {}: agent ready after {:?}, guest kernel {kernel}",
            request.id,
            started.elapsed()
        );
        let client = Arc::new(client);
        let init = create_in(&client, request, ROOT_DISK, vm.pid()).await?;
        Ok((client, init))
    }

    /// Creates a pod's app container in the VM of its sandbox `sandbox`,
    /// its root filesystem on a spare disk.
    async fn join(&self, request: CreateRequest, sandbox: &str) -> Result<Box<dyn Container>> {
        let started = Instant::now();
        let Some(pod) = pod::find(sandbox) else {
            return Err(Error::State(format!(
                "container {}: the VM of its pod's sandbox {sandbox} does not run in this shim",
                request.id
            )));
        };
        // Checked before anything is made.
        spec::create_call(&request.spec, &request.id, ROOT_DISK, false)?;
        let rootfs = request.rootfs()?;
        let slot = pod.take_slot(&request.id)?;
        let made = disk::fill(&rootfs, &pod.image(slot), vm::SPARE_SIZE).await;
        let created = match made {
            Ok(()) => create_in(&pod.client, &request, &vm::spare(slot), pod.vm.pid()).await,
            Err(e) => Err(e),
        };
        let init = match created {
            Ok(init) => init,
            Err(e) => {
                pod.release(slot);
                return Err(e);
            }
        };
        log::info!(
            "vm {sandbox}: container {} created on disk {} in {:?}",
            request.id,
            vm::spare(slot),
            started.elapsed()
        );
        Ok(Box::new(MicrovmContainer {
            id: request.id,
            vm: pod.vm.clone(),
            client: pod.client.clone(),
            init,
            place: Place::Member { pod, slot },
        }))
    }
}

/// Creates the container of `request` in the VM behind `client`, its root
/// filesystem on the disk with serial `disk`; `pid` is what the host
/// reports as its init's pid (the VMM's).
async fn create_in(
    client: &Arc<AgentClient>,
    request: &CreateRequest,
    disk: &str,
    pid: u32,
) -> Result<MicrovmProcess> {
    let call = spec::create_call(
        &request.spec,
        &request.id,
        disk,
        request.stdio.stdin.is_some(),
    )?;
    let outputs = stdio::outputs(&request.stdio)?;
    client.call(call).await?;
    client.attach(&request.id, INIT, outputs.sink);
    let init = MicrovmProcess::watch(
        &request.id,
        INIT,
        pid,
        client.clone(),
        outputs.writers,
        outputs.exit,
    );
    let input = stdio::input(
        &request.stdio,
        &request.id,
        INIT,
        client,
        init.close_notifier(),
    )?;
    init.set_input(input);
    Ok(init)
}

/// Fails unless `path` exists, naming what it is and how to make it.
fn require(what: &str, path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    Err(Error::Process(format!(
        "the microVM {what} {} is missing (scripts/guest.sh makes it)",
        path.display()
    )))
}

#[async_trait]
impl Backend for MicrovmBackend {
    async fn create(&self, request: CreateRequest) -> Result<Box<dyn Container>> {
        match spec::role(&request.spec) {
            Role::Member(sandbox) => self.join(request, &sandbox).await,
            Role::Sandbox => self.launch(request, true).await,
            Role::Alone => self.launch(request, false).await,
        }
    }

    async fn cleanup(&self, _id: &str, _bundle: &Path, state_dir: &Path) -> Result<()> {
        let state_dir = state_dir.to_owned();
        tokio::task::spawn_blocking(move || vm::cleanup(&state_dir))
            .await
            .map_err(|e| Error::Process(format!("cleanup task failed: {e}")))?
    }
}
