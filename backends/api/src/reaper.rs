//! The one place in a process that reaps children.
//!
//! The shim is a child subreaper: container processes whose parents exit are
//! re-parented to it, and it must collect every exit with `waitpid(-1)`.
//! Whoever else wants a child's status registers the pid here instead of
//! calling `wait` itself (which would race with this loop). Exits that arrive
//! before anybody asked are kept for a while, because a pid is often learned
//! only after the process may already have died.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// How many unclaimed exits are remembered; the oldest are dropped first.
const UNCLAIMED_LIMIT: usize = 4096;

#[derive(Default)]
struct Table {
    waiting: HashMap<i32, oneshot::Sender<i32>>,
    unclaimed: HashMap<i32, i32>,
    unclaimed_order: VecDeque<i32>,
}

impl Table {
    fn deliver(&mut self, pid: i32, status: i32) {
        if let Some(tx) = self.waiting.remove(&pid) {
            let _ = tx.send(status);
            return;
        }
        if self.unclaimed_order.len() >= UNCLAIMED_LIMIT {
            if let Some(old) = self.unclaimed_order.pop_front() {
                self.unclaimed.remove(&old);
            }
        }
        self.unclaimed.insert(pid, status);
        self.unclaimed_order.push_back(pid);
    }

    fn claim(&mut self, pid: i32) -> oneshot::Receiver<i32> {
        let (tx, rx) = oneshot::channel();
        match self.unclaimed.remove(&pid) {
            Some(status) => {
                self.unclaimed_order.retain(|p| *p != pid);
                let _ = tx.send(status);
            }
            None => {
                self.waiting.insert(pid, tx);
            }
        }
        rx
    }
}

static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();

fn table() -> std::sync::MutexGuard<'static, Table> {
    TABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the reaping loop on the current tokio runtime. Call once, early.
pub fn start() -> std::io::Result<()> {
    let mut sigchld = signal(SignalKind::child())?;
    tokio::spawn(async move {
        loop {
            reap_all();
            if sigchld.recv().await.is_none() {
                return;
            }
        }
    });
    Ok(())
}

/// Collects every child that has exited and hands its raw wait status on.
fn reap_all() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => table().deliver(pid.as_raw(), code << 8),
            Ok(WaitStatus::Signaled(pid, sig, _)) => table().deliver(pid.as_raw(), sig as i32),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                log::warn!("waitpid(-1) failed: {e}");
                return;
            }
        }
    }
}

/// Returns a receiver for the raw wait status of `pid`, which must be a child
/// (or an orphan re-parented to this subreaper). If the exit was already
/// collected, the receiver is ready at once.
pub fn watch(pid: i32) -> oneshot::Receiver<i32> {
    table().claim(pid)
}

/// Waits for `pid` to exit and returns its raw wait status.
pub async fn wait(pid: i32) -> i32 {
    // The sender is dropped only after sending, so an error cannot happen while
    // the loop runs; treat it as "killed" to stay on the safe side.
    watch(pid).await.unwrap_or(libc::SIGKILL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_that_came_first_is_delivered_on_claim() {
        let mut t = Table::default();
        t.deliver(42, 7 << 8);
        let mut rx = t.claim(42);
        assert_eq!(rx.try_recv().unwrap(), 7 << 8);
        assert!(t.unclaimed.is_empty() && t.unclaimed_order.is_empty());
    }

    #[test]
    fn a_claim_made_first_receives_the_exit() {
        let mut t = Table::default();
        let mut rx = t.claim(43);
        assert!(rx.try_recv().is_err());
        t.deliver(43, 9);
        assert_eq!(rx.try_recv().unwrap(), 9);
        assert!(t.waiting.is_empty());
    }

    #[test]
    fn unclaimed_exits_are_bounded() {
        let mut t = Table::default();
        for pid in 0..(UNCLAIMED_LIMIT as i32 + 10) {
            t.deliver(pid, 0);
        }
        assert_eq!(t.unclaimed.len(), UNCLAIMED_LIMIT);
        assert!(!t.unclaimed.contains_key(&0));
    }

    #[tokio::test]
    #[allow(clippy::zombie_processes)] // the reaper under test waits for it
    async fn real_children_are_reaped() {
        start().unwrap();
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 5"])
            .spawn()
            .unwrap();
        let status = wait(child.id() as i32).await;
        assert_eq!(crate::Exit::code_from_wait_status(status), 5);
    }
}
