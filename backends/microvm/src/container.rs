//! A container in a VM, from Create to Delete: a lone container or a pod's
//! sandbox owns its VM; a pod's app container is a guest in the sandbox's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxResources;
use strata_agent::protocol::{Call, Reply, INIT};
use strata_backend::{Container, Error, Metrics, Process, Result, Stdio};
use strata_cgroups::Version;

use crate::client::AgentClient;
use crate::pod::{self, Pod};
use crate::process::MicrovmProcess;
use crate::stdio;
use crate::vm::Vm;

/// How long the guest gets to power off by itself before its VMM is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How a container stands to its VM.
pub enum Place {
    /// The VM is the container's: Delete powers it off. A pod's sandbox
    /// (`pod`) also unregisters the pod.
    Owner {
        /// Whether the container is a pod's sandbox.
        pod: bool,
        /// The directory holding the VM's files.
        state_dir: PathBuf,
    },
    /// The container runs in its pod's VM, on spare disk `slot`: Delete
    /// removes it from the VM and frees the disk.
    Member {
        /// The pod.
        pod: Arc<Pod>,
        /// Its spare disk.
        slot: usize,
    },
}

/// A container, its VM and the connection to the VM's agent.
pub struct MicrovmContainer {
    pub(crate) id: String,
    pub(crate) vm: Arc<Vm>,
    pub(crate) client: Arc<AgentClient>,
    pub(crate) init: MicrovmProcess,
    pub(crate) place: Place,
}

#[async_trait]
impl Container for MicrovmContainer {
    fn init(&self) -> &dyn Process {
        &self.init
    }

    async fn start(&self) -> Result<()> {
        let call = Call::Start {
            container: self.id.clone(),
        };
        match self.client.call(call).await? {
            Reply::Started { pid } => {
                log::info!("vm {}: init started, guest pid {pid}", self.id);
                Ok(())
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn exec(
        &self,
        exec_id: &str,
        process: oci_spec::runtime::Process,
        stdio: Stdio,
    ) -> Result<Box<dyn Process>> {
        if self.init.try_exit().is_some() {
            return Err(Error::State(format!(
                "cannot exec {exec_id}: the container is not running"
            )));
        }
        strata_native::check_process(&process)?;
        let outputs = stdio::outputs(&stdio)?;
        let call = Call::Exec {
            container: self.id.clone(),
            exec_id: exec_id.to_owned(),
            process: Box::new(process),
            stdin: stdio.stdin.is_some(),
        };
        let pid = match self.client.call(call).await? {
            Reply::Started { pid } => pid,
            other => return Err(unexpected(&other)),
        };
        self.client.attach(&self.id, exec_id, outputs.sink);
        let process = MicrovmProcess::watch(
            &self.id,
            exec_id,
            pid,
            self.client.clone(),
            outputs.writers,
            outputs.exit,
        );
        let input = stdio::input(
            &stdio,
            &self.id,
            exec_id,
            &self.client,
            process.close_notifier(),
        )?;
        process.set_input(input);
        Ok(Box::new(process))
    }

    async fn kill_all(&self, signal: u32) -> Result<()> {
        self.client
            .call(Call::Kill {
                container: self.id.clone(),
                process: INIT.into(),
                signal,
                all: true,
            })
            .await
            .map(drop)
    }

    async fn pids(&self) -> Result<Vec<u32>> {
        // On the host, the container is its VMM process.
        Ok(vec![self.vm.pid()])
    }

    async fn pause(&self) -> Result<()> {
        self.owner_only("paused")?;
        self.vm.signal(Signal::SIGSTOP)
    }

    async fn resume(&self) -> Result<()> {
        self.owner_only("resumed")?;
        self.vm.signal(Signal::SIGCONT)
    }

    async fn update(&self, _resources: LinuxResources) -> Result<()> {
        Err(Error::State(format!(
            "container {}: the resources of a running microVM cannot be changed",
            self.id
        )))
    }

    async fn stats(&self) -> Result<Metrics> {
        let call = Call::Stats {
            container: self.id.clone(),
        };
        match self.client.call(call).await? {
            // The container's cgroup in the guest is a cgroup2 one.
            Reply::Stats(stats) => Ok(Metrics {
                version: Version::V2,
                stats: *stats,
            }),
            other => Err(unexpected(&other)),
        }
    }

    async fn oom(&self) -> Result<u64> {
        Err(Error::State(format!(
            "container {}: the guest does not report OOM kills",
            self.id
        )))
    }

    async fn destroy(&self) -> Result<()> {
        match &self.place {
            Place::Member { pod, slot } => {
                let call = Call::Remove {
                    container: self.id.clone(),
                };
                if let Err(e) = self.client.call(call).await {
                    if self.vm.exit_code().is_none() {
                        return Err(e);
                    }
                }
                pod.release(*slot);
                log::info!("vm {}: container {} removed", pod.vm.id(), self.id);
                Ok(())
            }
            Place::Owner { pod, state_dir } => {
                if *pod {
                    pod::forget(&self.id);
                }
                if self.vm.exit_code().is_none() {
                    let _ = self.vm.signal(Signal::SIGCONT);
                    let shutdown =
                        tokio::time::timeout(SHUTDOWN_GRACE, self.client.call(Call::Shutdown));
                    if let Ok(Err(e)) = shutdown.await {
                        log::debug!("vm {}: shutdown call: {e}", self.id);
                    }
                    self.vm.stop(SHUTDOWN_GRACE).await;
                }
                let state_dir = state_dir.clone();
                tokio::task::spawn_blocking(move || crate::vm::cleanup(&state_dir))
                    .await
                    .map_err(|e| Error::Process(format!("cleanup task failed: {e}")))?
            }
        }
    }
}

impl MicrovmContainer {
    /// Refuses what only the owner of a VM can do to it: stopping the VM
    /// would stop every container of the pod.
    fn owner_only(&self, what: &str) -> Result<()> {
        match self.place {
            Place::Owner { .. } => Ok(()),
            Place::Member { .. } => Err(Error::State(format!(
                "container {}: an app container of a pod VM cannot be {what} on its own",
                self.id
            ))),
        }
    }
}

fn unexpected(reply: &Reply) -> Error {
    Error::Process(format!("the agent gave an unexpected reply: {reply:?}"))
}
