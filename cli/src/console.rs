//! A container process's terminal: handing its master side to the caller
//! over `--console-socket`, or, for a foreground `run`/`exec` without one,
//! relaying between the master and this process's own standard streams.

use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};

/// What is sent along with the descriptor: the conventional name of a
/// terminal master (receivers only need the descriptor).
const MASTER_NAME: &[u8] = b"/dev/ptmx";

/// How long output is still relayed after the process exits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A failed hand-over or relay of a terminal.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The console socket could not be reached.
    #[error("connecting to the console socket {}: {source}", .path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The descriptor could not be sent.
    #[error("sending the terminal to the console socket {}: {}", .path.display(), .errno.desc())]
    Send {
        /// The socket path.
        path: PathBuf,
        /// The failure.
        errno: nix::errno::Errno,
    },
    /// The local terminal could not be set up.
    #[error("setting up the terminal: {0}")]
    Terminal(nix::errno::Errno),
}

/// Sends `master` to the unix socket at `path`, as an `SCM_RIGHTS` message.
pub fn send_master(path: &Path, master: &OwnedFd) -> Result<(), ConsoleError> {
    let stream = UnixStream::connect(path).map_err(|source| ConsoleError::Connect {
        path: path.to_owned(),
        source,
    })?;
    let fds = [master.as_raw_fd()];
    let control = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(MASTER_NAME)];
    loop {
        match sendmsg::<()>(stream.as_raw_fd(), &iov, &control, MsgFlags::empty(), None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => {
                return Err(ConsoleError::Send {
                    path: path.to_owned(),
                    errno,
                })
            }
        }
    }
}

/// Copies between this process's standard streams and a terminal master
/// while a foreground process runs; this process's own terminal, if any,
/// is raw meanwhile and restored on [`Relay::finish`].
pub struct Relay {
    master: OwnedFd,
    output: Option<JoinHandle<()>>,
    saved: Option<Termios>,
}

impl Relay {
    /// Starts relaying. Call with the signals the waiting loop handles
    /// already blocked, so the relay threads never receive them.
    pub fn start(master: OwnedFd) -> Result<Relay, ConsoleError> {
        let stdin = std::io::stdin();
        let saved = match termios::tcgetattr(stdin.as_fd()) {
            Ok(attrs) => {
                let mut raw = attrs.clone();
                termios::cfmakeraw(&mut raw);
                termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
                    .map_err(ConsoleError::Terminal)?;
                Some(attrs)
            }
            Err(_) => None,
        };
        let mut relay = Relay {
            master,
            output: None,
            saved,
        };
        relay.resize();
        let to_master = relay.clone_master()?;
        std::thread::spawn(move || copy_stdin(to_master));
        let from_master = relay.clone_master()?;
        relay.output = Some(std::thread::spawn(move || copy_output(from_master)));
        Ok(relay)
    }

    fn clone_master(&self) -> Result<std::fs::File, ConsoleError> {
        self.master
            .try_clone()
            .map(std::fs::File::from)
            .map_err(|e| {
                ConsoleError::Terminal(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
            })
    }

    /// Gives the container's terminal the size of this process's terminal.
    pub fn resize(&self) {
        if let Some(size) = window_size(std::io::stdout().as_fd()) {
            // SAFETY: TIOCSWINSZ reads a winsize that outlives the call from
            // a terminal descriptor this relay owns.
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        }
    }

    /// Waits (briefly) for the last output and restores this process's
    /// terminal.
    pub fn finish(mut self) {
        if let Some(output) = self.output.take() {
            let deadline = Instant::now() + DRAIN_TIMEOUT;
            while !output.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if output.is_finished() {
                let _ = output.join();
            }
        }
        self.restore();
    }

    fn restore(&mut self) {
        if let Some(saved) = self.saved.take() {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &saved);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The window size of the terminal `fd`, if it is one.
fn window_size(fd: BorrowedFd<'_>) -> Option<libc::winsize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into `size`, which outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (rc == 0).then_some(size)
}

fn copy_stdin(mut master: std::fs::File) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 4096];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if master.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
}

fn copy_output(mut master: std::fs::File) {
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stdout.write_all(&buf[..n]).is_err() || stdout.flush().is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO once the last process holding the terminal has gone.
            Err(_) => break,
        }
    }
}
