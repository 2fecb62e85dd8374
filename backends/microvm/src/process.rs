//! A process of a microVM container, seen from the host.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_agent::protocol::{process_key, Call};
use strata_backend::{Error, Exit, ExitCell, Process, Result};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::client::{AgentClient, LOST};

/// How long to wait for output to reach the FIFOs after an exit.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A process in the guest: named by its container and exec id.
pub struct MicrovmProcess {
    container: String,
    exec: String,
    pid: u32,
    client: Arc<AgentClient>,
    exit: Arc<ExitCell>,
    close_stdin: Arc<Notify>,
    input: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl MicrovmProcess {
    /// Follows process `exec` of `container`: its exit is recorded once the
    /// agent reported it and its output reached the FIFOs.
    pub fn watch(
        container: &str,
        exec: &str,
        pid: u32,
        client: Arc<AgentClient>,
        writers: Vec<JoinHandle<()>>,
        code: oneshot::Receiver<u32>,
    ) -> MicrovmProcess {
        let exit = Arc::new(ExitCell::default());
        {
            let exit = exit.clone();
            tokio::spawn(async move {
                let code = code.await.unwrap_or(LOST);
                let drained = async {
                    for writer in writers {
                        let _ = writer.await;
                    }
                };
                if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
                    log::warn!("output still not delivered {DRAIN_TIMEOUT:?} after an exit");
                }
                exit.set(Exit::now(code));
            });
        }
        MicrovmProcess {
            container: container.to_owned(),
            exec: exec.to_owned(),
            pid,
            client,
            exit,
            close_stdin: Arc::new(Notify::new()),
            input: std::sync::Mutex::new(None),
        }
    }

    /// The notifier that ends the stdin relay.
    pub fn close_notifier(&self) -> Arc<Notify> {
        self.close_stdin.clone()
    }

    /// Records the task relaying stdin, so CloseIO can end it.
    pub fn set_input(&self, input: Option<JoinHandle<()>>) {
        *self.input.lock().unwrap_or_else(|p| p.into_inner()) = input;
    }
}

#[async_trait]
impl Process for MicrovmProcess {
    fn pid(&self) -> u32 {
        self.pid
    }

    async fn kill(&self, signal: u32) -> Result<()> {
        if self.exit.get().is_some() {
            return Err(Error::NotFound(format!(
                "process {}: already finished",
                self.pid
            )));
        }
        self.client
            .call(Call::Kill {
                container: self.container.clone(),
                process: self.exec.clone(),
                signal,
                all: false,
            })
            .await
            .map(drop)
    }

    async fn wait(&self) -> Exit {
        self.exit.wait().await
    }

    fn try_exit(&self) -> Option<Exit> {
        self.exit.get()
    }

    async fn close_stdin(&self) {
        let relaying = self
            .input
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|task| !task.is_finished());
        if relaying {
            // The relay closes the guest's stdin once it stops.
            self.close_stdin.notify_one();
        } else if let Err(e) = self
            .client
            .call(Call::CloseStdin {
                container: self.container.clone(),
                process: self.exec.clone(),
            })
            .await
        {
            log::debug!(
                "closing stdin of {:?}: {e}",
                process_key(&self.container, &self.exec)
            );
        }
    }

    async fn resize_pty(&self, width: u32, height: u32) -> Result<()> {
        self.client
            .call(Call::ResizePty {
                container: self.container.clone(),
                process: self.exec.clone(),
                width,
                height,
            })
            .await
            .map(drop)
    }
}

impl Drop for MicrovmProcess {
    fn drop(&mut self) {
        if let Some(task) = self.input.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}
