//! What both ways of running a hook share: checking its settings, starting
//! it, keeping the end of its output and judging how it ended.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::{kill, killpg, SigSet, Signal};
use nix::unistd::{pipe2, Pid};
use oci_spec::runtime::Hook;

use crate::HookFailure;

/// How much of each output stream is kept for error messages.
pub(crate) const TAIL_LIMIT: usize = 4096;

/// How long output is still read after the hook exited. Output normally ends
/// with the hook; this only matters when something the hook left behind keeps
/// the pipes open, and then waiting longer would not help.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// How long a hook killed for its timeout may take to die before we stop
/// waiting (a process stuck in the kernel cannot be hurried).
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(5);

/// A checked hook, ready to start.
pub(crate) struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// The hook's `timeout`, if it has one.
    pub timeout: Option<Duration>,
}

/// A started hook: its pid and our ends of its standard streams.
pub(crate) struct Spawned {
    /// The hook's pid, which is also its process group.
    pub pid: i32,
    /// Where the state is written.
    pub stdin: OwnedFd,
    /// Its stdout.
    pub stdout: OwnedFd,
    /// Its stderr.
    pub stderr: OwnedFd,
}

/// Checks `hook`'s settings before anything is started.
///
/// `args` becomes argv exactly (`args[0]` included; the path when `args` is
/// empty) and `env` the whole environment, entries passed as written.
pub(crate) fn prepare(hook: &Hook) -> Result<Prepared, HookFailure> {
    let path = hook.path();
    if !path.is_absolute() {
        return Err(HookFailure::RelativePath);
    }
    let timeout = match hook.timeout() {
        None => None,
        Some(seconds) if seconds > 0 => Some(Duration::from_secs(seconds as u64)),
        Some(seconds) => return Err(HookFailure::BadTimeout(seconds)),
    };
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| HookFailure::Nul("path"))?;
    let argv = match hook.args().as_deref() {
        Some(args) if !args.is_empty() => c_strings(args, "an argument")?,
        _ => vec![path.clone()],
    };
    let envp = c_strings(hook.env().as_deref().unwrap_or(&[]), "an environment entry")?;
    Ok(Prepared {
        path,
        argv,
        envp,
        timeout,
    })
}

fn c_strings(items: &[String], what: &'static str) -> Result<Vec<CString>, HookFailure> {
    items
        .iter()
        .map(|item| CString::new(item.as_bytes()).map_err(|_| HookFailure::Nul(what)))
        .collect()
}

impl Prepared {
    /// Starts the hook with pipes on its standard streams, in a process group
    /// of its own (so a timeout can kill whatever it started too), with
    /// default signal handling and an empty signal mask.
    ///
    /// `posix_spawn` reports a missing or non-executable path as an error and
    /// never waits for a child itself afterwards, unlike `Command::spawn`,
    /// whose internal wait after a failed exec would race with (and panic
    /// because of) the shim's reaper.
    pub fn spawn(&self) -> Result<Spawned, HookFailure> {
        let io_err = |what| {
            move |e: nix::Error| HookFailure::Io {
                what,
                error: e.into(),
            }
        };
        let pipe = || -> nix::Result<(OwnedFd, OwnedFd)> {
            let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
            Ok((above_stdio(read)?, above_stdio(write)?))
        };
        let (stdin_theirs, stdin) = pipe().map_err(io_err("creating the hook's pipes"))?;
        let (stdout, stdout_theirs) = pipe().map_err(io_err("creating the hook's pipes"))?;
        let (stderr, stderr_theirs) = pipe().map_err(io_err("creating the hook's pipes"))?;

        let setup = || -> nix::Result<(PosixSpawnFileActions, PosixSpawnAttr)> {
            let mut actions = PosixSpawnFileActions::init()?;
            actions.add_dup2(stdin_theirs.as_raw_fd(), 0)?;
            actions.add_dup2(stdout_theirs.as_raw_fd(), 1)?;
            actions.add_dup2(stderr_theirs.as_raw_fd(), 2)?;
            let mut attr = PosixSpawnAttr::init()?;
            attr.set_pgroup(Pid::from_raw(0))?;
            attr.set_sigdefault(&SigSet::all())?;
            attr.set_sigmask(&SigSet::empty())?;
            attr.set_flags(
                PosixSpawnFlags::POSIX_SPAWN_SETPGROUP
                    | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
                    | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK,
            )?;
            Ok((actions, attr))
        };
        let (actions, attr) = setup().map_err(io_err("preparing to start the hook"))?;
        let pid = posix_spawn(
            self.path.as_c_str(),
            &actions,
            &attr,
            &self.argv,
            &self.envp,
        )
        .map_err(|e| HookFailure::Spawn(e.into()))?;
        Ok(Spawned {
            pid: pid.as_raw(),
            stdin,
            stdout,
            stderr,
        })
    }
}

/// Moves a descriptor above 2, so that setting up the child's standard
/// streams cannot overwrite one pipe end with another.
fn above_stdio(fd: OwnedFd) -> nix::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let raw = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: fcntl just returned this new descriptor; nothing else owns it.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

/// Kills a timed-out hook and everything in its process group.
pub(crate) fn kill_group(pid: i32) {
    let pid = Pid::from_raw(pid);
    if killpg(pid, Signal::SIGKILL).is_err() {
        let _ = kill(pid, Signal::SIGKILL);
    }
}

/// The end of one output stream of a hook.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    bytes: Vec<u8>,
    cut: bool,
}

impl Tail {
    /// Adds output, forgetting all but the last [`TAIL_LIMIT`] bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > TAIL_LIMIT {
            let excess = self.bytes.len() - TAIL_LIMIT;
            self.bytes.drain(..excess);
            self.cut = true;
        }
    }

    /// The kept output as text, trimmed, marked with "..." when cut.
    pub fn text(&self) -> String {
        let mut bytes = &self.bytes[..];
        if self.cut {
            // Do not start in the middle of a UTF-8 sequence.
            while let [b, rest @ ..] = bytes {
                if b & 0xC0 != 0x80 {
                    break;
                }
                bytes = rest;
            }
        }
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        if self.cut && !text.is_empty() {
            format!("...{text}")
        } else {
            text.to_owned()
        }
    }
}

/// How a started hook ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// It exited; the raw wait status.
    Status(i32),
    /// It outlived its timeout and was killed.
    TimedOut(Duration),
}

/// A started hook's end and what it printed.
#[derive(Debug)]
pub(crate) struct Ended {
    /// How it ended.
    pub ending: Ending,
    /// The end of its stdout.
    pub stdout: Tail,
    /// The end of its stderr.
    pub stderr: Tail,
}

impl Ended {
    /// Success for a zero exit status, the matching failure otherwise.
    pub fn judge(self) -> Result<(), HookFailure> {
        let output = match self.stderr.text() {
            text if text.is_empty() => self.stdout.text(),
            text => text,
        };
        let status = match self.ending {
            Ending::TimedOut(limit) => {
                return Err(HookFailure::TimedOut {
                    seconds: limit.as_secs(),
                    output,
                })
            }
            Ending::Status(status) => ExitStatus::from_raw(status),
        };
        match (status.code(), status.signal()) {
            (Some(0), _) => {
                if !output.is_empty() {
                    log::debug!("hook output: {output}");
                }
                Ok(())
            }
            (Some(code), _) => Err(HookFailure::Exited { code, output }),
            (None, Some(signal)) => Err(HookFailure::Signaled { signal, output }),
            (None, None) => Err(HookFailure::Io {
                what: "waiting for the hook",
                error: io::Error::other(format!("unexpected wait status {status:?}")),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    #[test]
    fn tails_keep_only_the_end() {
        let mut tail = Tail::default();
        tail.push(b"first\n");
        assert_eq!(tail.text(), "first");
        for _ in 0..1000 {
            tail.push(b"0123456789");
        }
        tail.push("last é\n".as_bytes());
        let text = tail.text();
        assert!(text.starts_with("..."), "{text}");
        assert!(text.ends_with("last é"), "{text}");
        assert!(!text.contains("first"));
        assert!(text.len() <= TAIL_LIMIT + 3);
    }

    #[test]
    fn cut_tails_do_not_start_inside_a_character() {
        let mut tail = Tail::default();
        // Two-byte characters and one more byte, so that the cut leaves the
        // second half of a character in front.
        tail.push("é".repeat(TAIL_LIMIT / 2 + 1).as_bytes());
        tail.push(b"z");
        let text = tail.text();
        assert!(!text.contains('\u{FFFD}'), "{text}");
        assert!(text.starts_with("...é") && text.ends_with("éz"), "{text}");
    }

    #[test]
    fn statuses_are_judged() {
        let ended = |ending| Ended {
            ending,
            stdout: Tail::default(),
            stderr: Tail::default(),
        };
        assert!(ended(Ending::Status(0)).judge().is_ok());
        let failed = ended(Ending::Status(3 << 8)).judge().unwrap_err();
        assert!(matches!(failed, HookFailure::Exited { code: 3, .. }));
        let killed = ended(Ending::Status(libc::SIGTERM)).judge().unwrap_err();
        assert!(matches!(killed, HookFailure::Signaled { signal, .. } if signal == libc::SIGTERM));
        let slow = ended(Ending::TimedOut(Duration::from_secs(4)))
            .judge()
            .unwrap_err();
        assert!(matches!(slow, HookFailure::TimedOut { seconds: 4, .. }));
    }

    #[test]
    fn stdout_stands_in_for_an_empty_stderr() {
        let mut stdout = Tail::default();
        stdout.push(b"said on stdout\n");
        let failed = Ended {
            ending: Ending::Status(1 << 8),
            stdout,
            stderr: Tail::default(),
        }
        .judge()
        .unwrap_err();
        assert_eq!(failed.to_string(), "exited with status 1: said on stdout");
    }

    #[test]
    fn bad_settings_are_refused_before_spawning() {
        let relative = HookBuilder::default().path("bin/hook").build().unwrap();
        assert!(matches!(prepare(&relative), Err(HookFailure::RelativePath)));
        let zero = HookBuilder::default()
            .path("/bin/true")
            .timeout(0)
            .build()
            .unwrap();
        assert!(matches!(prepare(&zero), Err(HookFailure::BadTimeout(0))));
        let env = HookBuilder::default()
            .path("/bin/true")
            .env(vec!["A=1".to_string(), "B=\0".to_string()])
            .build()
            .unwrap();
        assert!(matches!(
            prepare(&env),
            Err(HookFailure::Nul("an environment entry"))
        ));
    }
}
