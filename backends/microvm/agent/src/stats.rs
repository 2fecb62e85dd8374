//! The guest's resource usage, read from its `/proc`.

use strata_agent::protocol::GuestStats;

use crate::error::{io, Result};

/// Nanoseconds per clock tick of `/proc/stat` (USER_HZ is 100 on Linux).
const NS_PER_TICK: u64 = 10_000_000;

/// Reads CPU time, memory use and the number of processes.
pub fn read() -> Result<GuestStats> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(io("reading /proc/stat"))?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    let field = |i: usize| cpu.get(i).copied().unwrap_or(0) * NS_PER_TICK;
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(io("reading /proc/meminfo"))?;
    let kib = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
            * 1024
    };
    let pids = std::fs::read_dir("/proc")
        .map_err(io("listing /proc"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        // Kernel threads have no executable; the agent is pid 1.
        .filter(|&pid| pid != 1 && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok())
        .count() as u64;
    Ok(GuestStats {
        // user + nice
        cpu_user_ns: field(0) + field(1),
        // system + irq + softirq
        cpu_kernel_ns: field(2) + field(5) + field(6),
        memory_used: kib("MemTotal").saturating_sub(kib("MemAvailable")),
        memory_total: kib("MemTotal"),
        pids,
    })
}
