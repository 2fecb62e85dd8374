//! Exit statuses, and a cell that many waiters can await.

use std::time::SystemTime;

use tokio::sync::watch;

/// How and when a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + the signal number for a process killed by a signal.
    pub code: u32,
    /// When the exit was observed.
    pub at: SystemTime,
}

impl Exit {
    /// An exit observed now.
    pub fn now(code: u32) -> Self {
        Exit {
            code,
            at: SystemTime::now(),
        }
    }

    /// Converts a `wait` status into an exit code the way shells do (128 + signal).
    pub fn code_from_wait_status(status: libc::c_int) -> u32 {
        if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status) as u32
        } else {
            libc::WEXITSTATUS(status) as u32
        }
    }
}

/// Holds a process's exit once known; any number of tasks can wait for it.
#[derive(Debug)]
pub struct ExitCell {
    tx: watch::Sender<Option<Exit>>,
}

impl Default for ExitCell {
    fn default() -> Self {
        ExitCell {
            tx: watch::channel(None).0,
        }
    }
}

impl ExitCell {
    /// Records the exit; the first record wins, later ones are ignored.
    pub fn set(&self, exit: Exit) {
        self.tx.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(exit);
            true
        });
    }

    /// The exit, if it is known.
    pub fn get(&self) -> Option<Exit> {
        *self.tx.borrow()
    }

    /// Waits until the exit is known.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            // The sender lives in `self`, so the channel cannot close while we wait.
            let _ = rx.changed().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_deaths_map_to_128_plus_signal() {
        // A status for "killed by SIGKILL" as the kernel encodes it.
        assert_eq!(Exit::code_from_wait_status(libc::SIGKILL), 137);
        // "exited with 7" is encoded in the second byte.
        assert_eq!(Exit::code_from_wait_status(7 << 8), 7);
    }

    #[tokio::test]
    async fn every_waiter_sees_the_first_exit() {
        let cell = std::sync::Arc::new(ExitCell::default());
        let waiter = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.wait().await.code })
        };
        cell.set(Exit::now(3));
        cell.set(Exit::now(9));
        assert_eq!(waiter.await.unwrap(), 3);
        assert_eq!(cell.wait().await.code, 3);
        assert_eq!(cell.get().map(|e| e.code), Some(3));
    }
}
