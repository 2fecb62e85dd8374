//! A process of a native container, from the runtime's side.

use std::sync::Arc;

use async_trait::async_trait;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use strata_backend::{reaper, Error, Exit, ExitCell, Process, Result};
use tokio::sync::Mutex;

use crate::stdio::StreamCopier;

/// A host process plus the copiers of its streams.
pub(crate) struct NativeProcess {
    pid: i32,
    exit: Arc<ExitCell>,
    streams: Arc<Mutex<StreamCopier>>,
}

impl NativeProcess {
    /// Follows `pid`: its exit is recorded once the reaper reports it and its
    /// output has been delivered.
    pub fn watch(pid: i32, streams: StreamCopier) -> NativeProcess {
        let exit = Arc::new(ExitCell::default());
        let streams = Arc::new(Mutex::new(streams));
        let status = reaper::watch(pid);
        {
            let exit = exit.clone();
            let streams = streams.clone();
            tokio::spawn(async move {
                let status = status.await.unwrap_or(libc::SIGKILL);
                streams.lock().await.drain().await;
                exit.set(Exit::now(Exit::code_from_wait_status(status)));
            });
        }
        NativeProcess { pid, exit, streams }
    }
}

#[async_trait]
impl Process for NativeProcess {
    fn pid(&self) -> u32 {
        self.pid as u32
    }

    async fn kill(&self, signal: u32) -> Result<()> {
        if self.exit.get().is_some() {
            return Err(Error::NotFound(format!(
                "process {}: already finished",
                self.pid
            )));
        }
        let signal = Signal::try_from(signal as i32).map_err(|_| Error::InvalidSpec {
            field: "signal".into(),
            reason: format!("{signal} is not a signal"),
        })?;
        match kill(Pid::from_raw(self.pid), signal) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ESRCH) => Err(Error::NotFound(format!(
                "process {}: already finished",
                self.pid
            ))),
            Err(e) => Err(Error::sys(format!("sending {signal} to {}", self.pid), e)),
        }
    }

    async fn wait(&self) -> Exit {
        self.exit.wait().await
    }

    fn try_exit(&self) -> Option<Exit> {
        self.exit.get()
    }

    async fn close_stdin(&self) {
        self.streams.lock().await.close_stdin();
    }

    async fn resize_pty(&self, width: u32, height: u32) -> Result<()> {
        self.streams.lock().await.resize(width, height)
    }
}
