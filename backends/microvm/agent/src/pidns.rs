//! Which guest processes belong to a container: those in the PID namespace
//! its init process is PID 1 of.

use std::time::{Duration, Instant};

/// How long a killed container may take to end.
const END_TIMEOUT: Duration = Duration::from_secs(5);

/// The guest pids (as the agent sees them) of every process in the PID
/// namespace of `init`, `init` included; empty once `init` is gone.
pub fn members(init: i32) -> Vec<i32> {
    let Ok(namespace) = std::fs::read_link(format!("/proc/{init}/ns/pid")) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|ns| ns == namespace)
        })
        .collect()
}

/// Waits (up to [`END_TIMEOUT`]) until `init` has ended. The kernel lets
/// the init of a PID namespace end only after every other process in it,
/// so then nothing of the container runs.
pub fn wait_gone(init: i32) {
    let deadline = Instant::now() + END_TIMEOUT;
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        if state.is_none_or(|s| s.starts_with('Z')) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("strata-agent: process {init} still runs {END_TIMEOUT:?} after SIGKILL");
}
