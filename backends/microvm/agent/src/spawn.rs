//! Starting a container process in the guest: its standard streams, held
//! for the host to read ([`Output`]) and written from its calls, and the
//! process itself, started in the container's PID namespace and cgroup as
//! the agent's [`enter`](crate::enter) helper, which makes it the spec's
//! process.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg};
use nix::pty::openpty;
use nix::sched::{unshare, CloneFlags};
use nix::sys::memfd::MFdFlags;
use strata_agent::protocol::MAX_CHUNK;

use crate::enter::{EnterRequest, ENTER_ARG, REQUEST_FD, STATUS_FD};
use crate::error::{io, sys, AgentError, Result};
use crate::output::Output;

/// How long output may go on after a process exited; a daemonized child
/// may hold the streams open forever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent's side of a process's standard streams.
pub struct Streams {
    /// Takes stdin data from the host; dropping it closes the process's stdin.
    stdin: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    /// The terminal's master side, when the process has a terminal.
    terminal: Option<OwnedFd>,
    /// Standard output, or the terminal's output.
    pub stdout: Arc<Output>,
    /// Standard error; none with a terminal, which merges both.
    pub stderr: Option<Arc<Output>>,
}

/// The descriptors the process gets as 0, 1 and 2.
pub struct ChildEnds {
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
    terminal: bool,
}

impl Streams {
    /// Makes the streams of a process: a terminal, or pipes (stdin only
    /// if the host connected one), and the threads that relay them.
    pub fn open(terminal: bool, stdin: bool) -> Result<(Streams, ChildEnds)> {
        let stdout = Arc::new(Output::default());
        if terminal {
            let pty = openpty(None, None).map_err(sys("opening a terminal"))?;
            let master = pty.master;
            nix::fcntl::fcntl(
                &master,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .map_err(sys("marking the terminal close-on-exec"))?;
            let reader = File::from(master.try_clone().map_err(io("duplicating the terminal"))?);
            relay_output(reader, stdout.clone());
            let writer = File::from(master.try_clone().map_err(io("duplicating the terminal"))?);
            let streams = Streams {
                stdin: Mutex::new(Some(relay_input(writer))),
                terminal: Some(master),
                stdout,
                stderr: None,
            };
            let slave = File::from(pty.slave);
            let dup = |f: &File| f.try_clone().map_err(io("duplicating the terminal"));
            let ends = ChildEnds {
                stdin: Stdio::from(dup(&slave)?),
                stdout: Stdio::from(dup(&slave)?),
                stderr: Stdio::from(slave),
                terminal: true,
            };
            return Ok((streams, ends));
        }
        let (child_stdin, input) = if stdin {
            let (read, write) = pipe()?;
            (Stdio::from(read), Some(relay_input(write)))
        } else {
            (Stdio::null(), None)
        };
        let stderr = Arc::new(Output::default());
        let (out_read, out_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        relay_output(out_read, stdout.clone());
        relay_output(err_read, stderr.clone());
        let ends = ChildEnds {
            stdin: child_stdin,
            stdout: Stdio::from(out_write),
            stderr: Stdio::from(err_write),
            terminal: false,
        };
        Ok((
            Streams {
                stdin: Mutex::new(input),
                terminal: None,
                stdout,
                stderr: Some(stderr),
            },
            ends,
        ))
    }

    fn outputs(&self) -> impl Iterator<Item = &Arc<Output>> {
        std::iter::once(&self.stdout).chain(self.stderr.iter())
    }

    /// Waits until every output stream reached its end, or the drain
    /// timeout; a stream still open then is ended where it stands.
    pub fn drain(&self) {
        for output in self.outputs() {
            if !output.wait_end(DRAIN_TIMEOUT) {
                eprintln!(
                    "strata-agent: output still open {DRAIN_TIMEOUT:?} after the process exited"
                );
                output.end();
            }
        }
    }

    /// Waits until the host has read every output stream to its end.
    pub fn wait_read(&self) {
        for output in self.outputs() {
            output.wait_end_read();
        }
    }

    /// Ends every output stream unread, for a process that never ran.
    pub fn abandon(&self) {
        for output in self.outputs() {
            output.abandon();
        }
    }

    /// Passes `data` to the process's stdin; ignored once it was closed.
    pub fn write_stdin(&self, data: Vec<u8>) {
        if let Some(tx) = self
            .stdin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = tx.send(data);
        }
    }

    /// Closes the process's stdin once what was written before has gone.
    pub fn close_stdin(&self) {
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Sets the terminal's window size.
    pub fn resize(&self, width: u16, height: u16) -> Result<()> {
        let Some(master) = &self.terminal else {
            return Err(AgentError::Refused("the process has no terminal".into()));
        };
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: `master` is an open terminal and `size` a valid winsize
        // that outlives the call.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
            return Err(io("resizing the terminal")(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

fn pipe() -> Result<(File, File)> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("creating a pipe"))?;
    Ok((File::from(read), File::from(write)))
}

/// Moves what the process writes to `from` into `to` until either ends.
fn relay_output(mut from: File, to: Arc<Output>) {
    std::thread::spawn(move || {
        let mut buf = vec![0; MAX_CHUNK];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if !to.push(buf[..n].to_vec()) {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A terminal's master reads EIO once the last slave closed: the end.
                Err(_) => break,
            }
        }
        to.end();
    });
}

/// Writes the host's stdin data to `to` until the sender is dropped.
fn relay_input(mut to: File) -> mpsc::Sender<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        for chunk in rx {
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    tx
}

/// One process to start, and where its pid goes.
struct Job {
    request: EnterRequest,
    ends: ChildEnds,
    reply: mpsc::Sender<Result<u32>>,
}

/// The thread that starts every process of one container, each in the
/// container's cgroup. It alone enters the container's PID namespace
/// (`unshare(CLONE_NEWPID)` applies to the children of the calling thread,
/// and such a thread can no longer start threads), so the agent's other
/// threads stay free to start theirs.
pub struct Spawner {
    jobs: mpsc::Sender<Job>,
}

impl Spawner {
    /// Starts the thread and has it create the PID namespace; its processes
    /// join the cgroup whose `cgroup.procs` is `join`.
    pub fn new(join: OwnedFd) -> Result<Spawner> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::channel();
        std::thread::spawn(move || {
            let entered =
                unshare(CloneFlags::CLONE_NEWPID).map_err(sys("creating a PID namespace"));
            let failed = entered.is_err();
            let _ = ready_tx.send(entered);
            if failed {
                return;
            }
            for job in queue {
                let pid = launch(&job.request, job.ends, join.as_raw_fd());
                let _ = job.reply.send(pid);
            }
        });
        ready
            .recv()
            .map_err(|_| AgentError::Refused("the spawner thread ended".into()))??;
        Ok(Spawner { jobs })
    }

    /// Starts the process `request` describes (see [`launch`]) on the
    /// spawner thread.
    pub fn spawn(&self, request: EnterRequest, ends: ChildEnds) -> Result<u32> {
        let (reply, pid) = mpsc::channel();
        let gone = || AgentError::Refused("the spawner thread ended".into());
        self.jobs
            .send(Job {
                request,
                ends,
                reply,
            })
            .map_err(|_| gone())?;
        pid.recv().map_err(|_| gone())?
    }
}

/// The lowest descriptor number the request and status descriptors are
/// moved to before the child places them, so that placing one never
/// overwrites the other.
const HIGH_FD: RawFd = 100;

/// Starts the agent's [`enter`](crate::enter) helper with `ends` as its
/// standard streams, in the cgroup whose `cgroup.procs` is `join`, as a
/// session leader (with its terminal, if it has one); the helper becomes
/// the process `request` describes. Returns its pid once the program runs,
/// or the helper's error.
fn launch(request: &EnterRequest, ends: ChildEnds, join: RawFd) -> Result<u32> {
    let json = serde_json::to_vec(request)
        .map_err(|e| AgentError::Refused(format!("encoding the process: {e}")))?;
    let memfd = nix::sys::memfd::memfd_create(c"strata-enter", MFdFlags::MFD_CLOEXEC)
        .map_err(sys("creating the request's memfd"))?;
    let mut file = File::from(memfd);
    file.write_all(&json)
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
        .map_err(io("writing the request"))?;
    let high = |fd: &dyn AsFd| -> Result<OwnedFd> {
        let raw =
            fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(HIGH_FD)).map_err(sys("moving a descriptor up"))?;
        // SAFETY: fcntl just made `raw`; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    };
    let request_fd = high(&file)?;
    let (mut status_read, status_write) = pipe()?;
    let status_fd = high(&status_write)?;
    drop(status_write);
    let mut command = Command::new("/proc/self/exe");
    command
        .arg(ENTER_ARG)
        .env_clear()
        .stdin(ends.stdin)
        .stdout(ends.stdout)
        .stderr(ends.stderr);
    let terminal = ends.terminal;
    let (request_raw, status_raw) = (request_fd.as_raw_fd(), status_fd.as_raw_fd());
    let setup = move || -> std::io::Result<()> {
        // SAFETY: `join` is the open `cgroup.procs` the spawner owns, and the
        // buffer is a one-byte static string.
        if unsafe { libc::write(join, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(std::io::Error::last_os_error());
        }
        check(
            // SAFETY: setsid has no memory effects.
            unsafe { libc::setsid() },
        )?;
        if terminal {
            check(
                // SAFETY: descriptor 0 is the terminal's slave side here.
                unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) },
            )?;
        }
        check(
            // SAFETY: dup2 between descriptors this child holds.
            unsafe { libc::dup2(request_raw, REQUEST_FD) },
        )?;
        check(
            // SAFETY: as above.
            unsafe { libc::dup2(status_raw, STATUS_FD) },
        )?;
        Ok(())
    };
    // SAFETY: the closure calls only async-signal-safe functions on data it
    // owns, and allocates nothing.
    unsafe { command.pre_exec(setup) };
    let program = request
        .process
        .args()
        .as_ref()
        .and_then(|a| a.first().cloned())
        .unwrap_or_default();
    let child = command
        .spawn()
        .map_err(|e| AgentError::Refused(format!("starting {program:?}: {e}")))?;
    drop(command);
    drop((request_fd, status_fd, file));
    // Empty when the helper executed the program (the pipe closed on exec).
    let mut failure = String::new();
    status_read
        .read_to_string(&mut failure)
        .map_err(io("reading the helper's status"))?;
    if !failure.is_empty() {
        // The reaper collects the helper's exit.
        return Err(AgentError::Refused(format!("{program:?}: {failure}")));
    }
    // The reaper collects the exit; the handle is not needed.
    Ok(child.id())
}

fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}
