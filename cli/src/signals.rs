//! Signals: parsing the names and numbers `kill` takes, and waiting for a
//! foreground container process while passing on the signals this
//! process receives, as a supervisor would.

use std::str::FromStr;

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::console::Relay;
use crate::error::{Error, Result};

/// A signal to send: `None` is signal 0, which only checks that the target
/// exists.
pub type Sig = Option<Signal>;

/// Parses `9`, `KILL`, `kill` or `SIGKILL`.
pub fn parse(text: &str) -> Result<Sig> {
    if let Ok(number) = text.parse::<i32>() {
        if number == 0 {
            return Ok(None);
        }
        return Signal::try_from(number)
            .map(Some)
            .map_err(|_| Error::Usage(format!("unknown signal {text:?}")));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name)
        .map(Some)
        .map_err(|_| Error::Usage(format!("unknown signal {text:?}")))
}

/// The signals a foreground `run` or `exec` passes on to its process
/// (besides SIGWINCH, which resizes its terminal, and SIGCHLD, which ends
/// the wait).
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGPIPE,
    Signal::SIGALRM,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGURG,
    Signal::SIGPROF,
    Signal::SIGVTALRM,
    Signal::SIGIO,
    Signal::SIGPWR,
    Signal::SIGSYS,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
];

/// Signals held back for [`wait_forwarding`]: blocked in this thread (and
/// in threads started after), received with `sigwait`.
pub struct Blocked {
    set: SigSet,
}

impl Blocked {
    /// Blocks the forwarded signals, SIGWINCH and SIGCHLD in the calling
    /// thread. Processes started later reset their mask, so the container
    /// does not inherit this.
    pub fn block() -> Result<Blocked> {
        let mut set = SigSet::empty();
        for &signal in FORWARDED {
            set.add(signal);
        }
        set.add(Signal::SIGWINCH);
        set.add(Signal::SIGCHLD);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
            .map_err(|e| Error::io("blocking signals", e.into()))?;
        Ok(Blocked { set })
    }
}

/// Waits for `pid` (a child of this process) to exit, sending it every
/// forwarded signal this process receives meanwhile and resizing `relay`'s
/// terminal on SIGWINCH. Returns its exit code: the code it exited with,
/// or 128 plus the number of the signal that killed it.
pub fn wait_forwarding(pid: i32, blocked: &Blocked, relay: Option<&Relay>) -> Result<i32> {
    let child = Pid::from_raw(pid);
    loop {
        if let Some(code) = reap(child)? {
            return Ok(code);
        }
        let signal = blocked
            .set
            .wait()
            .map_err(|e| Error::io("waiting for signals", e.into()))?;
        match signal {
            Signal::SIGCHLD => {}
            Signal::SIGWINCH => {
                if let Some(relay) = relay {
                    relay.resize();
                }
            }
            other => match kill(child, other) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => log::warn!("passing {other} on to {pid}: {}", e.desc()),
            },
        }
    }
}

/// The exit code of `child` if it has exited (and is now reaped).
fn reap(child: Pid) -> Result<Option<i32>> {
    loop {
        return match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Ok(Some(code)),
            Ok(WaitStatus::Signaled(_, signal, _)) => Ok(Some(128 + signal as i32)),
            Ok(_) => Ok(None),
            Err(Errno::EINTR) => continue,
            Err(e) => Err(Error::io(format!("waiting for process {child}"), e.into())),
        };
    }
}

/// Reaps the children of this process that have already exited (the
/// backend's short-lived helpers), without waiting for any other, and
/// leaving `keep` (a process whose exit status is still wanted) alone.
pub fn reap_exited(keep: Option<i32>) {
    use nix::sys::wait::{waitid, Id};
    loop {
        // Look first (WNOWAIT), so that `keep` is never collected here.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        let pid = match waitid(Id::All, flags) {
            Ok(status) => match status.pid() {
                Some(pid) => pid,
                None => return,
            },
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        };
        if Some(pid.as_raw()) == keep {
            return;
        }
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    }
}

/// Reaps every exited child of this process without waiting, so killed
/// helpers do not linger as zombies after a failed command; waits up to
/// `patience` for children still exiting.
pub fn reap_children(patience: std::time::Duration) {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if std::time::Instant::now() >= deadline {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("9").expect("9"), Some(Signal::SIGKILL));
        assert_eq!(parse("KILL").expect("KILL"), Some(Signal::SIGKILL));
        assert_eq!(parse("sigterm").expect("sigterm"), Some(Signal::SIGTERM));
        assert_eq!(parse("SIGUSR1").expect("SIGUSR1"), Some(Signal::SIGUSR1));
        assert_eq!(parse("hup").expect("hup"), Some(Signal::SIGHUP));
        assert_eq!(parse("0").expect("0"), None);
        for bad in ["NOPE", "SIGNOPE", "999", "-3", ""] {
            let err = parse(bad).expect_err(bad);
            assert_eq!(err.to_string(), format!("unknown signal {bad:?}"));
        }
    }
}
