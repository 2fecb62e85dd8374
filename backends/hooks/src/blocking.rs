//! Running one hook from a single-threaded process that reaps its own
//! children, such as a container's init before it execs the user's program.
//!
//! No threads are started (the caller may still need to be single-threaded,
//! e.g. to join a user namespace): one `poll` loop feeds stdin, reads both
//! output pipes and notices the exit through a pidfd, falling back to
//! checking every few milliseconds on kernels without pidfds.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Hook;

use crate::hook::{kill_group, prepare, Ended, Ending, Spawned, Tail, DRAIN_GRACE, KILL_GRACE};
use crate::HookFailure;

/// How often the exit is checked for when there is no pidfd to wait on.
const TICK: Duration = Duration::from_millis(10);

/// Runs `hook` with `input` on its stdin and returns how it ended.
pub(crate) fn run_one(hook: &Hook, input: &[u8]) -> Result<Ended, HookFailure> {
    let prepared = prepare(hook)?;
    let spawned = prepared.spawn()?;
    let pid = spawned.pid;
    let result = Pipes::new(spawned, input).and_then(|pipes| {
        Run {
            pid,
            pipes,
            limit: prepared.timeout,
        }
        .drive()
    });
    if result.is_err() {
        // Do not leave a hook behind that we can no longer talk to.
        kill_group(pid);
        let _ = waitpid(Pid::from_raw(pid), None);
    }
    result
}

/// Collects `pid` if it has exited, as a raw wait status.
fn try_reap(pid: i32) -> Result<Option<i32>, HookFailure> {
    loop {
        return match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Ok(Some(code << 8)),
            Ok(WaitStatus::Signaled(_, signal, core)) => {
                Ok(Some(signal as i32 | if core { 0x80 } else { 0 }))
            }
            Ok(_) => Ok(None),
            Err(Errno::EINTR) => continue,
            Err(e) => Err(HookFailure::Io {
                what: "waiting for the hook",
                error: e.into(),
            }),
        };
    }
}

/// Our ends of the hook's pipes (each dropped once finished) and the tails.
struct Pipes<'a> {
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    input: &'a [u8],
    written: usize,
    stdout_tail: Tail,
    stderr_tail: Tail,
}

impl<'a> Pipes<'a> {
    fn new(spawned: Spawned, input: &'a [u8]) -> Result<Self, HookFailure> {
        for fd in [&spawned.stdin, &spawned.stdout, &spawned.stderr] {
            set_nonblocking(fd).map_err(|e| HookFailure::Io {
                what: "setting up the hook's pipes",
                error: e.into(),
            })?;
        }
        Ok(Pipes {
            stdin: (!input.is_empty()).then(|| File::from(spawned.stdin)),
            stdout: Some(File::from(spawned.stdout)),
            stderr: Some(File::from(spawned.stderr)),
            input,
            written: 0,
            stdout_tail: Tail::default(),
            stderr_tail: Tail::default(),
        })
    }

    fn reading(&self) -> bool {
        self.stdout.is_some() || self.stderr.is_some()
    }

    /// Waits up to `wait` (forever if `None`) for a pipe or `pidfd` to become
    /// ready and serves the pipes that are.
    fn serve(
        &mut self,
        pidfd: Option<&OwnedFd>,
        wait: Option<Duration>,
    ) -> Result<(), HookFailure> {
        let timeout = match wait {
            None => PollTimeout::NONE,
            Some(d) => {
                let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let (stdin_ready, stdout_ready, stderr_ready) = {
            let mut fds = Vec::with_capacity(4);
            let mut slots = [None; 3];
            for (slot, (file, events)) in [
                (&self.stdin, PollFlags::POLLOUT),
                (&self.stdout, PollFlags::POLLIN),
                (&self.stderr, PollFlags::POLLIN),
            ]
            .into_iter()
            .enumerate()
            {
                if let Some(file) = file {
                    slots[slot] = Some(fds.len());
                    fds.push(PollFd::new(file.as_fd(), events));
                }
            }
            if let Some(pidfd) = pidfd {
                fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    return Err(HookFailure::Io {
                        what: "waiting for the hook",
                        error: e.into(),
                    })
                }
            }
            let ready = |slot: Option<usize>| {
                slot.and_then(|i| fds[i].revents())
                    .is_some_and(|r| !r.is_empty())
            };
            (ready(slots[0]), ready(slots[1]), ready(slots[2]))
        };
        if stdin_ready {
            self.feed();
        }
        if stdout_ready {
            drain(&mut self.stdout, &mut self.stdout_tail);
        }
        if stderr_ready {
            drain(&mut self.stderr, &mut self.stderr_tail);
        }
        Ok(())
    }

    /// Writes as much of the state as the pipe takes; closes stdin when all
    /// is written or the hook closed its end.
    fn feed(&mut self) {
        let Some(stdin) = &mut self.stdin else { return };
        while self.written < self.input.len() {
            match stdin.write(&self.input[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::debug!("hook did not take its input: {e}");
                    break;
                }
            }
        }
        self.stdin = None;
    }
}

/// Reads what a stream has, keeping its tail; drops it at its end.
fn drain(stream: &mut Option<File>, tail: &mut Tail) {
    let Some(file) = stream else { return };
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => tail.push(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => {
                log::debug!("reading hook output: {e}");
                break;
            }
        }
    }
    *stream = None;
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// A descriptor that becomes readable when `pid` exits, if the kernel has
/// pidfds (Linux 5.3 and later).
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and reads no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns
    // it; it is close-on-exec by definition.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// One started hook being followed to its end.
struct Run<'a> {
    pid: i32,
    pipes: Pipes<'a>,
    limit: Option<Duration>,
}

impl Run<'_> {
    fn drive(mut self) -> Result<Ended, HookFailure> {
        let pid = self.pid;
        // Opened before the first exit check, so it cannot refer to a
        // recycled pid: the child is not reaped until we reap it.
        let pidfd = pidfd_open(pid);
        let deadline = self.limit.map(|limit| Instant::now() + limit);
        let mut status = None;
        let mut drain_until = None;
        let mut killed_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if status.is_none() {
                if let Some(exit) = try_reap(pid)? {
                    status = Some(exit);
                    drain_until = Some(now + DRAIN_GRACE);
                }
            }
            let mut wake = drain_until;
            if let Some(until) = drain_until {
                if !self.pipes.reading() || now >= until {
                    break;
                }
            } else {
                match (killed_at, deadline) {
                    (None, Some(at)) if now >= at => {
                        kill_group(pid);
                        killed_at = Some(now);
                    }
                    (Some(at), _) if now >= at + KILL_GRACE => {
                        log::warn!("hook {pid} was killed for its timeout but has not exited");
                        break;
                    }
                    _ => {}
                }
                wake = killed_at.map(|at| at + KILL_GRACE).or(deadline);
                if pidfd.is_none() {
                    wake = Some(wake.map_or(now + TICK, |at| at.min(now + TICK)));
                }
            }
            let wait = wake.map(|at| at.saturating_duration_since(now));
            let pidfd = pidfd.as_ref().filter(|_| status.is_none());
            self.pipes.serve(pidfd, wait)?;
        }
        let ending = match (killed_at, status) {
            (Some(_), _) | (None, None) => Ending::TimedOut(self.limit.unwrap_or_default()),
            (None, Some(status)) => Ending::Status(status),
        };
        Ok(Ended {
            ending,
            stdout: self.pipes.stdout_tail,
            stderr: self.pipes.stderr_tail,
        })
    }
}
