//! The microvm backend: each container in a virtual machine of its own,
//! with its own guest kernel.
//!
//! At Create, the container's root filesystem becomes an ext4 disk image
//! ([`disk`]), a QEMU process boots the guest kernel with an initramfs whose
//! PID 1 is Strata's agent (`strata-agent`, [`vm`]), and the shim talks to
//! the agent over a virtio-serial port ([`client`]): the agent mounts the
//! disk and runs the container's processes; their output and exits come
//! back as frames that [`stdio`] delivers to containerd's FIFOs. Delete
//! powers the VM off and removes its files; a VM that dies ends its
//! processes with exit 137 and a reason in the log.
//!
//! Inside the guest, the agent runs the container's processes chrooted
//! into the mounted disk, in a PID namespace of their own (init is PID 1),
//! with the spec's user, environment, working directory and terminal; the
//! VM is the isolation boundary, so capabilities, seccomp and the other
//! namespaces of the spec are not applied in the guest. Only kernel
//! filesystems of the spec's mounts reach the guest; bind mounts of host
//! paths are skipped with a warning.
//!
//! The built-in VMM does not exist yet: `hypervisor = "auto"` means QEMU,
//! with KVM where the CPU has hardware virtualization and TCG otherwise.

mod client;
mod container;
mod disk;
mod hypervisor;
mod process;
mod spec;
mod stdio;
mod vm;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use strata_agent::protocol::INIT;
use strata_backend::{Backend, Container, CreateRequest, Error, Result};
use strata_config::MicrovmOptions;

use crate::client::AgentClient;
use crate::container::MicrovmContainer;
use crate::process::MicrovmProcess;
use crate::vm::{Vm, VmConfig};

/// How long the guest may take from QEMU's start until its agent answers;
/// TCG on a busy host is slow.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// Creates microVM containers for a class.
pub struct MicrovmBackend {
    options: MicrovmOptions,
}

impl MicrovmBackend {
    /// A backend running VMs shaped by `options`.
    pub fn new(options: MicrovmOptions) -> MicrovmBackend {
        MicrovmBackend { options }
    }

    /// Boots the VM and brings the container up to Created; on failure the
    /// caller tears the VM down.
    async fn boot(
        &self,
        request: &CreateRequest,
        vm: &Vm,
        started: Instant,
    ) -> Result<(Arc<AgentClient>, MicrovmProcess)> {
        let stream = vm.connect().await?;
        let (client, kernel) =
            match tokio::time::timeout(BOOT_TIMEOUT, AgentClient::connect(stream, &request.id))
                .await
            {
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
        let call = spec::create_call(&request.spec, request.stdio.stdin.is_some())?;
        let outputs = stdio::outputs(&request.stdio)?;
        client.attach(INIT, outputs.sink);
        if let Err(e) = client.call(call).await {
            client.detach(INIT);
            return Err(e);
        }
        let init = MicrovmProcess::watch(
            INIT,
            vm.pid(),
            client.clone(),
            outputs.writers,
            outputs.exit,
        );
        let input = stdio::input(&request.stdio, INIT, &client, init.close_notifier())?;
        init.set_input(input);
        Ok((client, init))
    }
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
        let started = Instant::now();
        let accel = hypervisor::choose(self.options.hypervisor)?;
        require("kernel", &self.options.kernel)?;
        require("initramfs", &self.options.initramfs)?;
        let memory_mib = spec::memory_mib(&request.spec, self.options.memory_mib)?;
        // Checked before anything is made.
        spec::create_call(&request.spec, false)?;
        let disk = request.state_dir.join(vm::DISK);
        if let Err(e) = disk::make(&request.bundle.join("rootfs"), &disk).await {
            let _ = std::fs::remove_file(&disk);
            return Err(e);
        }
        let config = VmConfig {
            id: request.id.clone(),
            accel,
            vcpus: self.options.vcpus,
            memory_mib,
            kernel: self.options.kernel.clone(),
            initramfs: self.options.initramfs.clone(),
            state_dir: request.state_dir.clone(),
        };
        let vm = match Vm::launch(&config) {
            Ok(vm) => vm,
            Err(e) => {
                let _ = vm::cleanup(&request.state_dir);
                return Err(e);
            }
        };
        match self.boot(&request, &vm, started).await {
            Ok((client, init)) => {
                log::info!("vm {}: created in {:?}", request.id, started.elapsed());
                Ok(Box::new(MicrovmContainer {
                    id: request.id,
                    vm,
                    client,
                    init,
                    state_dir: request.state_dir,
                }))
            }
            Err(e) => {
                vm.stop(Duration::ZERO).await;
                let _ = vm::cleanup(&request.state_dir);
                Err(e)
            }
        }
    }

    async fn cleanup(&self, _id: &str, _bundle: &Path, state_dir: &Path) -> Result<()> {
        let state_dir = state_dir.to_owned();
        tokio::task::spawn_blocking(move || vm::cleanup(&state_dir))
            .await
            .map_err(|e| Error::Process(format!("cleanup task failed: {e}")))?
    }
}
