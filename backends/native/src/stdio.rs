//! Connects a container process's standard streams to containerd's FIFOs.
//!
//! The process gets pipes; the runtime copies between the pipes and the
//! FIFOs. Owning the pipes lets the runtime close stdin on request (CloseIO)
//! and know when all output has been delivered (every writer has gone), so an
//! exit is reported only after the output written just before it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::fcntl::OFlag;
use strata_backend::{Error, Result, Stdio};
use tokio::net::unix::pipe;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long to wait for output after a process exits; a daemonized child
/// may hold the pipe open forever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The descriptors a new process gets as 0, 1 and 2.
pub(crate) struct ChildStdio {
    /// Standard input.
    pub stdin: std::process::Stdio,
    /// Standard output.
    pub stdout: std::process::Stdio,
    /// Standard error.
    pub stderr: std::process::Stdio,
}

impl ChildStdio {
    /// The calling process's own standard streams, passed on as they are.
    pub fn inherit() -> ChildStdio {
        ChildStdio {
            stdin: std::process::Stdio::inherit(),
            stdout: std::process::Stdio::inherit(),
            stderr: std::process::Stdio::inherit(),
        }
    }
}

/// The runtime's side of a process's streams.
pub(crate) struct StreamCopier {
    outputs: Vec<JoinHandle<()>>,
    input: Option<JoinHandle<()>>,
    close_stdin: std::sync::Arc<Notify>,
    /// The FIFOs, kept for a terminal that arrives after the process is made.
    stdio: Stdio,
    terminal: Option<OwnedFd>,
}

impl StreamCopier {
    /// Opens the FIFOs named in `stdio` and returns the child's ends. A
    /// process with a terminal gets `/dev/null` here and its terminal later,
    /// through [`StreamCopier::attach_terminal`].
    pub fn open(stdio: &Stdio) -> Result<(StreamCopier, ChildStdio)> {
        let close_stdin = std::sync::Arc::new(Notify::new());
        let mut copier = StreamCopier {
            outputs: Vec::new(),
            input: None,
            close_stdin: close_stdin.clone(),
            stdio: stdio.clone(),
            terminal: None,
        };
        if stdio.terminal {
            let null = || std::process::Stdio::null();
            return Ok((
                copier,
                ChildStdio {
                    stdin: null(),
                    stdout: null(),
                    stderr: null(),
                },
            ));
        }
        let stdin = match &stdio.stdin {
            Some(path) => {
                let (read, write) = pipe_pair()?;
                let fifo = pipe::OpenOptions::new()
                    .open_receiver(path)
                    .map_err(|e| Error::path("opening the stdin FIFO", path, e))?;
                let write = pipe::Sender::from_owned_fd(write)
                    .map_err(|e| Error::io("registering the stdin pipe", e))?;
                copier.input = Some(tokio::spawn(copy_input(fifo, write, close_stdin)));
                std::process::Stdio::from(read)
            }
            None => std::process::Stdio::null(),
        };
        let stdout = copier.output(stdio.stdout.as_deref())?;
        let stderr = copier.output(stdio.stderr.as_deref())?;
        Ok((
            copier,
            ChildStdio {
                stdin,
                stdout,
                stderr,
            },
        ))
    }

    fn output(&mut self, path: Option<&Path>) -> Result<std::process::Stdio> {
        let Some(path) = path else {
            return Ok(std::process::Stdio::null());
        };
        let (read, write) = pipe_pair()?;
        // Read-write keeps the open from failing or blocking when nobody reads yet.
        let fifo = pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(path)
            .map_err(|e| Error::path("opening the output FIFO", path, e))?;
        let read = pipe::Receiver::from_owned_fd(read)
            .map_err(|e| Error::io("registering an output pipe", e))?;
        self.outputs.push(tokio::spawn(copy_output(read, fifo)));
        Ok(std::process::Stdio::from(write))
    }

    /// Copies between the terminal's master side and the FIFOs: stdin into
    /// the terminal, the terminal into stdout.
    pub fn attach_terminal(&mut self, master: OwnedFd) -> Result<()> {
        nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(|e| Error::sys("making the terminal non-blocking", e))?;
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| Error::io("duplicating the terminal", e))
        };
        if let Some(path) = self.stdio.stdout.clone() {
            let fifo = pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&path)
                .map_err(|e| Error::path("opening the output FIFO", &path, e))?;
            let reader = pipe::Receiver::from_owned_fd_unchecked(dup(&master)?)
                .map_err(|e| Error::io("registering the terminal", e))?;
            self.outputs.push(tokio::spawn(copy_output(reader, fifo)));
        }
        if let Some(path) = self.stdio.stdin.clone() {
            let fifo = pipe::OpenOptions::new()
                .open_receiver(&path)
                .map_err(|e| Error::path("opening the stdin FIFO", &path, e))?;
            let writer = pipe::Sender::from_owned_fd_unchecked(dup(&master)?)
                .map_err(|e| Error::io("registering the terminal", e))?;
            self.input = Some(tokio::spawn(copy_input(
                fifo,
                writer,
                self.close_stdin.clone(),
            )));
        }
        self.terminal = Some(master);
        Ok(())
    }

    /// Sets the terminal's window size.
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let Some(master) = &self.terminal else {
            return Err(Error::State("the process has no terminal".into()));
        };
        let size = libc::winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: `master` is an open terminal and `size` a valid struct that
        // outlives the call.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
            return Err(Error::io(
                "resizing the terminal",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Closes the process's stdin so that it reads end-of-file.
    pub fn close_stdin(&self) {
        self.close_stdin.notify_one();
    }

    /// Waits until all output has been delivered, or the drain timeout passes.
    pub async fn drain(&mut self) {
        let outputs = std::mem::take(&mut self.outputs);
        let all = futures_join(outputs);
        if tokio::time::timeout(DRAIN_TIMEOUT, all).await.is_err() {
            log::warn!("output still open {DRAIN_TIMEOUT:?} after the process exited");
        }
    }
}

impl Drop for StreamCopier {
    fn drop(&mut self) {
        for task in self.outputs.iter().chain(self.input.iter()) {
            task.abort();
        }
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

async fn copy_input(
    mut fifo: pipe::Receiver,
    mut pipe: pipe::Sender,
    close: std::sync::Arc<Notify>,
) {
    tokio::select! {
        _ = tokio::io::copy(&mut fifo, &mut pipe) => {}
        _ = close.notified() => {}
    }
    // Dropping the sender closes the process's stdin.
}

async fn copy_output(mut pipe: pipe::Receiver, mut fifo: pipe::Sender) {
    match tokio::io::copy(&mut pipe, &mut fifo).await {
        Ok(_) => {}
        // A terminal's master reads EIO once the last slave is closed: the end.
        Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
        Err(e) => log::debug!("copying output: {e}"),
    }
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("creating a pipe", e))
}
