//! Starting a container process in the guest: its standard streams, relayed
//! to the host as frames, and the process itself, in the container's cgroup,
//! chrooted into its root filesystem with its user, working directory and
//! environment.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::pty::openpty;
use nix::sched::{unshare, CloneFlags};
use oci_spec::runtime::Process;
use strata_agent::protocol::{Frame, Stream, MAX_CHUNK};

use crate::error::{io, sys, AgentError, Result};
use crate::link::Link;
use crate::rootfs::ProcMount;

/// How long output may go on after a process exited; a daemonized child
/// may hold the streams open forever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent's side of a process's standard streams.
pub struct Streams {
    /// Takes stdin data from the host; dropping it closes the process's stdin.
    pub stdin: Option<mpsc::Sender<Vec<u8>>>,
    /// The terminal's master side, when the process has a terminal.
    pub terminal: Option<OwnedFd>,
    done: mpsc::Receiver<()>,
    readers: usize,
}

/// The descriptors the process gets as 0, 1 and 2.
pub struct ChildEnds {
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
    terminal: bool,
}

impl Streams {
    /// Makes the streams of process `key`: a terminal, or pipes (stdin
    /// only if the host connected one), and the threads that relay them.
    pub fn open(
        key: &str,
        terminal: bool,
        stdin: bool,
        link: &Link,
    ) -> Result<(Streams, ChildEnds)> {
        let (done_tx, done) = mpsc::channel();
        if terminal {
            let pty = openpty(None, None).map_err(sys("opening a terminal"))?;
            let master = pty.master;
            nix::fcntl::fcntl(
                &master,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .map_err(sys("marking the terminal close-on-exec"))?;
            let reader = File::from(master.try_clone().map_err(io("duplicating the terminal"))?);
            relay_output(key, Stream::Stdout, reader, link, done_tx);
            let writer = File::from(master.try_clone().map_err(io("duplicating the terminal"))?);
            let streams = Streams {
                stdin: Some(relay_input(writer)),
                terminal: Some(master),
                done,
                readers: 1,
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
        let mut ends = ChildEnds {
            stdin: child_stdin,
            stdout: Stdio::null(),
            stderr: Stdio::null(),
            terminal: false,
        };
        for stream in [Stream::Stdout, Stream::Stderr] {
            let (read, write) = pipe()?;
            relay_output(key, stream, read, link, done_tx.clone());
            match stream {
                Stream::Stdout => ends.stdout = Stdio::from(write),
                _ => ends.stderr = Stdio::from(write),
            }
        }
        Ok((
            Streams {
                stdin: input,
                terminal: None,
                done,
                readers: 2,
            },
            ends,
        ))
    }

    /// Waits until every output stream reached its end, or the drain timeout.
    pub fn drain(self) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        for _ in 0..self.readers {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.done.recv_timeout(left).is_err() {
                eprintln!(
                    "strata-agent: output still open {DRAIN_TIMEOUT:?} after the process exited"
                );
                return;
            }
        }
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

/// Copies what the process writes to `from` to the host, then reports done.
fn relay_output(key: &str, stream: Stream, mut from: File, link: &Link, done: mpsc::Sender<()>) {
    let (key, link) = (key.to_owned(), link.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0; MAX_CHUNK];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => link.send(&Frame::Data {
                    process: key.clone(),
                    stream,
                    data: buf[..n].to_vec(),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A terminal's master reads EIO once the last slave closed: the end.
                Err(_) => break,
            }
        }
        let _ = done.send(());
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
    process: Process,
    executable: String,
    ends: ChildEnds,
    proc_mounts: Vec<ProcMount>,
    reply: mpsc::Sender<Result<u32>>,
}

/// The thread that starts every process of one container, each in the
/// container's cgroup. It alone enters
/// the container's PID namespace (`unshare(CLONE_NEWPID)` applies to the
/// children of the calling thread, and such a thread can no longer start
/// threads), so the agent's other threads stay free to start theirs.
pub struct Spawner {
    jobs: mpsc::Sender<Job>,
}

impl Spawner {
    /// Starts the thread and has it create the PID namespace; its processes
    /// join the cgroup whose `cgroup.procs` is `join` and run chrooted into
    /// `root`.
    pub fn new(root: &std::path::Path, join: OwnedFd) -> Result<Spawner> {
        let root = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| AgentError::Refused(format!("{} contains NUL", root.display())))?;
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
                let pid = launch(
                    &job.process,
                    &job.executable,
                    job.ends,
                    &job.proc_mounts,
                    &root,
                    join.as_raw_fd(),
                );
                let _ = job.reply.send(pid);
            }
        });
        ready
            .recv()
            .map_err(|_| AgentError::Refused("the spawner thread ended".into()))??;
        Ok(Spawner { jobs })
    }

    /// Starts `process` (see [`launch`]) on the spawner thread.
    pub fn spawn(
        &self,
        process: Process,
        executable: String,
        ends: ChildEnds,
        proc_mounts: Vec<ProcMount>,
    ) -> Result<u32> {
        let (reply, pid) = mpsc::channel();
        let gone = || AgentError::Refused("the spawner thread ended".into());
        self.jobs
            .send(Job {
                process,
                executable,
                ends,
                proc_mounts,
                reply,
            })
            .map_err(|_| gone())?;
        pid.recv().map_err(|_| gone())?
    }
}

/// Starts `process` running `executable` (a path inside the container)
/// with `ends` as its standard streams, after joining the cgroup through
/// `join` (its `cgroup.procs`) and mounting `proc_mounts` from its own PID
/// namespace, chrooted into `root`; returns its pid.
fn launch(
    process: &Process,
    executable: &str,
    ends: ChildEnds,
    proc_mounts: &[ProcMount],
    root: &CString,
    join: RawFd,
) -> Result<u32> {
    let args = process.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return Err(AgentError::Refused("process.args is empty".into()));
    };
    let mut command = Command::new(executable);
    command
        .arg0(arg0)
        .args(&args[1..])
        .env_clear()
        .stdin(ends.stdin)
        .stdout(ends.stdout)
        .stderr(ends.stderr);
    for kv in process.env().clone().unwrap_or_default() {
        if let Some((key, value)) = kv.split_once('=') {
            command.env(key, value);
        }
    }
    let root = root.clone();
    let cwd = CString::new(process.cwd().as_os_str().as_bytes())
        .map_err(|_| AgentError::Refused("process.cwd contains NUL".into()))?;
    let user = process.user();
    let (uid, gid) = (user.uid(), user.gid());
    let groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    let umask = user.umask();
    let terminal = ends.terminal;
    let proc_mounts = proc_mounts.to_vec();
    let proc = CString::new("proc").expect("no NUL in a constant");
    let setup = move || -> std::io::Result<()> {
        // SAFETY: `join` is the open `cgroup.procs` the spawner owns, and the
        // buffer is a one-byte static string.
        if unsafe { libc::write(join, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(std::io::Error::last_os_error());
        }
        for m in &proc_mounts {
            check(
                // SAFETY: every pointer is a NUL-terminated string owned by
                // the closure, or null for the absent data.
                unsafe {
                    libc::mount(
                        proc.as_ptr(),
                        m.target.as_ptr(),
                        proc.as_ptr(),
                        m.flags.bits(),
                        std::ptr::null(),
                    )
                },
            )?;
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
            // SAFETY: `root` is a NUL-terminated string owned by the closure.
            unsafe { libc::chroot(root.as_ptr()) },
        )?;
        check(
            // SAFETY: `cwd` is a NUL-terminated string owned by the closure.
            unsafe { libc::chdir(cwd.as_ptr()) },
        )?;
        check(
            // SAFETY: `groups` is a valid array of `groups.len()` gids.
            unsafe { libc::setgroups(groups.len(), groups.as_ptr()) },
        )?;
        check(
            // SAFETY: setgid has no memory effects.
            unsafe { libc::setgid(gid) },
        )?;
        check(
            // SAFETY: setuid has no memory effects.
            unsafe { libc::setuid(uid) },
        )?;
        if let Some(mask) = umask {
            // SAFETY: umask has no memory effects and cannot fail.
            unsafe { libc::umask(mask as libc::mode_t) };
        }
        Ok(())
    };
    // SAFETY: the closure calls only async-signal-safe functions on data it
    // owns, and allocates nothing.
    unsafe { command.pre_exec(setup) };
    let child = command
        .spawn()
        .map_err(|e| AgentError::Refused(format!("exec: {arg0:?}: {e}")))?;
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
