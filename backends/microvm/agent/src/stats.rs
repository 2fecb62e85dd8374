//! A container's resource usage, read from the guest's `/proc`: the sum
//! over the processes of its PID namespace.

use strata_agent::protocol::GuestStats;

use crate::error::{io, Result};

/// Nanoseconds per clock tick of `/proc/<pid>/stat` (USER_HZ is 100 on Linux).
const NS_PER_TICK: u64 = 10_000_000;

/// Bytes per page of `/proc/<pid>/statm`.
const PAGE: u64 = 4096;

/// Reads the CPU time (their own and that of the children they waited
/// for), resident memory and number of `pids`, and the guest's memory.
pub fn read(pids: &[i32]) -> Result<GuestStats> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(io("reading /proc/meminfo"))?;
    let memory_total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    let mut stats = GuestStats {
        memory_total,
        ..GuestStats::default()
    };
    for pid in pids {
        // A process may end while it is read: it then counts for nothing.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state is field 0, utime
        // 11, stime 12, and the times of children it waited for 13 and 14.
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default()
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        stats.cpu_user_ns += (field(11) + field(13)) * NS_PER_TICK;
        stats.cpu_kernel_ns += (field(12) + field(14)) * NS_PER_TICK;
        let resident = std::fs::read_to_string(format!("/proc/{pid}/statm"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
        stats.memory_used += resident * PAGE;
        stats.pids += 1;
    }
    Ok(stats)
}
