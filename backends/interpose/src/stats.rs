//! Per-syscall counters of what the supervisor did with the calls it got.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use serde::Serialize;

/// What happened to the calls of one syscall.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Calls received.
    pub notified: u64,
    /// Calls the supervisor performed or answered itself.
    pub emulated: u64,
    /// Calls handed back to the kernel to run as made.
    pub continued: u64,
    /// Calls refused by the policy.
    pub denied: u64,
}

/// Counters per syscall name. Calls the filter denies in the kernel never
/// reach the supervisor and are not counted; calls whose caller was
/// interrupted before the answer count as notified only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Counters by syscall name.
    pub calls: BTreeMap<String, Counts>,
}

impl Stats {
    /// The counters of `name`, zero if it was never called.
    pub fn get(&self, name: &str) -> Counts {
        self.calls.get(name).copied().unwrap_or_default()
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<18} {:>9} {:>9} {:>9} {:>9}",
            "syscall", "notified", "emulated", "continued", "denied"
        )?;
        for (name, c) in &self.calls {
            writeln!(
                f,
                "{name:<18} {:>9} {:>9} {:>9} {:>9}",
                c.notified, c.emulated, c.continued, c.denied
            )?;
        }
        Ok(())
    }
}

/// The outcome of one call, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Received (counted before handling).
    Notified,
    /// Performed or answered by the supervisor.
    Emulated,
    /// Handed back to the kernel.
    Continued,
    /// Refused by the policy.
    Denied,
}

/// Counters shared by the worker threads.
#[derive(Default)]
pub(crate) struct Counter {
    stats: Mutex<BTreeMap<&'static str, Counts>>,
}

impl Counter {
    /// Counts one `outcome` of `name`.
    pub(crate) fn count(&self, name: &'static str, outcome: Outcome) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let c = stats.entry(name).or_default();
        match outcome {
            Outcome::Notified => c.notified += 1,
            Outcome::Emulated => c.emulated += 1,
            Outcome::Continued => c.continued += 1,
            Outcome::Denied => c.denied += 1,
        }
    }

    /// The counters so far.
    pub(crate) fn snapshot(&self) -> Stats {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        Stats {
            calls: stats.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }
}
