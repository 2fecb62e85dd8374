//! What both ways of running a hook share: checking its settings, building
//! the command, keeping the end of its output and judging how it ended.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
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

/// A hook's command, ready to spawn, and its time limit.
pub(crate) struct Prepared {
    /// The command with argv, environment, pipes and process group set.
    pub command: Command,
    /// The hook's `timeout`, if it has one.
    pub timeout: Option<Duration>,
}

/// Checks `hook` and builds its command.
///
/// The hook gets exactly its `env`, `args[0]` as its argv\[0\], pipes on all
/// three standard streams, and a process group of its own so that a timeout
/// can kill whatever it started as well. Descriptors beyond the standard
/// three are not inherited.
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
    let mut command = Command::new(path);
    if let Some((first, rest)) = hook.args().as_deref().and_then(<[String]>::split_first) {
        command.arg0(first).args(rest);
    }
    command.env_clear();
    for entry in hook.env().iter().flatten() {
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| HookFailure::BadEnv(entry.clone()))?;
        command.env(key, value);
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure runs between fork and exec; it makes one system
    // call, which is async-signal-safe, and neither allocates nor locks.
    unsafe { command.pre_exec(keep_only_stdio) };
    Ok(Prepared { command, timeout })
}

/// Marks every descriptor above stderr close-on-exec in the forked child, so
/// a hook cannot hold on to the caller's sockets or pipes (for example the
/// channel between the shim and a container's init).
fn keep_only_stdio() -> io::Result<()> {
    // SAFETY: close_range only changes descriptor flags of this process and
    // reads no memory. Kernels without it answer ENOSYS, which is ignored:
    // descriptors opened by Rust are close-on-exec anyway.
    let _ = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Ok(())
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
            .env(vec!["A=1".to_string(), "JUSTAKEY".to_string()])
            .build()
            .unwrap();
        assert!(matches!(prepare(&env), Err(HookFailure::BadEnv(e)) if e == "JUSTAKEY"));
    }
}
