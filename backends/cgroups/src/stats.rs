//! Usage statistics of a cgroup, read from its interface files.
//!
//! Every field says which file it comes from on each version; a field the
//! version (or the running kernel, or the mounted controllers) lacks is 0 or
//! empty. Byte counts are bytes, times are nanoseconds.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::hierarchy::Version;
use crate::resources::UNLIMITED;
use crate::sys;

/// A snapshot of a cgroup's usage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU time and throttling.
    pub cpu: CpuStats,
    /// Memory use and limits.
    pub memory: MemoryStats,
    /// Process count and limit.
    pub pids: PidsStats,
    /// Block IO per device, sorted by device number.
    pub io: Vec<IoDeviceStats>,
    /// Huge page use per page size, sorted by size name.
    pub hugetlb: Vec<HugetlbStats>,
}

/// CPU statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStats {
    /// Total CPU time. v1: `cpuacct.usage`; v2: `cpu.stat` `usage_usec`.
    pub usage_total_ns: u64,
    /// CPU time in user mode. v1: `cpuacct.usage_user`, else `cpuacct.stat`
    /// `user` (clock ticks); v2: `cpu.stat` `user_usec`.
    pub usage_user_ns: u64,
    /// CPU time in kernel mode. v1: `cpuacct.usage_sys`, else
    /// `cpuacct.stat` `system` (clock ticks); v2: `cpu.stat` `system_usec`.
    pub usage_kernel_ns: u64,
    /// CPU time per CPU. v1: `cpuacct.usage_percpu`; v2: empty.
    pub per_cpu_ns: Vec<u64>,
    /// Enforcement periods elapsed. `cpu.stat` `nr_periods` (both).
    pub nr_periods: u64,
    /// Periods in which the cgroup was throttled. `cpu.stat`
    /// `nr_throttled` (both).
    pub nr_throttled: u64,
    /// Time spent throttled. v1: `cpu.stat` `throttled_time`; v2:
    /// `cpu.stat` `throttled_usec`.
    pub throttled_time_ns: u64,
}

/// Memory statistics. Limits are `u64::MAX` when unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Memory in use. v1: `memory.usage_in_bytes`; v2: `memory.current`.
    pub usage: u64,
    /// The memory limit. v1: `memory.limit_in_bytes`; v2: `memory.max`.
    pub limit: u64,
    /// The highest usage seen. v1: `memory.max_usage_in_bytes`; v2:
    /// `memory.peak` (kernel 5.19 and later).
    pub max_usage: u64,
    /// How often usage hit the limit. v1: `memory.failcnt`; v2:
    /// `memory.events` `max`.
    pub failcnt: u64,
    /// Swap in use, swap alone. v1: `memory.memsw.usage_in_bytes` minus
    /// `usage`; v2: `memory.swap.current`.
    pub swap_usage: u64,
    /// The swap limit, swap alone. v1: `memory.memsw.limit_in_bytes` minus
    /// `limit`; v2: `memory.swap.max`.
    pub swap_limit: u64,
    /// Page cache. v1: `memory.stat` `cache`; v2: `memory.stat` `file`.
    pub cache: u64,
    /// Anonymous memory. v1: `memory.stat` `rss`; v2: `memory.stat` `anon`.
    pub rss: u64,
    /// Mapped file pages. v1: `memory.stat` `mapped_file`; v2:
    /// `memory.stat` `file_mapped`.
    pub mapped_file: u64,
    /// Page faults. `memory.stat` `pgfault` (both).
    pub pgfault: u64,
    /// Major page faults. `memory.stat` `pgmajfault` (both).
    pub pgmajfault: u64,
    /// Inactive page cache. `memory.stat` `inactive_file` (both).
    pub inactive_file: u64,
    /// Active page cache. `memory.stat` `active_file` (both).
    pub active_file: u64,
    /// Processes killed by the OOM killer. v1: `memory.oom_control`
    /// `oom_kill` (kernel 4.13 and later); v2: `memory.events` `oom_kill`.
    pub oom_kill: u64,
    /// Every key of `memory.stat` with its value (both).
    pub stat: BTreeMap<String, u64>,
}

/// Process statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    /// Processes and threads in the cgroup. `pids.current` (both).
    pub current: u64,
    /// Their limit, 0 when unlimited. `pids.max` (both).
    pub limit: u64,
}

/// Block IO of one device.
///
/// v1: `blkio.throttle.io_service_bytes_recursive` and
/// `blkio.throttle.io_serviced_recursive` (or the same files without
/// `_recursive`), their `Read` and `Write` lines; v2: `io.stat` `rbytes`,
/// `wbytes`, `rios`, `wios`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoDeviceStats {
    /// The device's major number.
    pub major: u64,
    /// The device's minor number.
    pub minor: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read operations.
    pub read_ios: u64,
    /// Write operations.
    pub write_ios: u64,
}

/// Huge page use of one page size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugetlbStats {
    /// The page size as the kernel names it, such as `2MB`.
    pub page_size: String,
    /// Bytes in use. v1: `hugetlb.SIZE.usage_in_bytes`; v2:
    /// `hugetlb.SIZE.current`.
    pub usage: u64,
    /// The highest use seen. v1: `hugetlb.SIZE.max_usage_in_bytes`; v2: 0.
    pub max_usage: u64,
    /// Allocations that failed on the limit. v1: `hugetlb.SIZE.failcnt`; v2:
    /// `hugetlb.SIZE.events` `max`.
    pub failcnt: u64,
}

impl Cgroup {
    /// Reads the cgroup's usage statistics; see [`Stats`] for where each
    /// number comes from. Missing files (and, on v1, unmounted controllers)
    /// leave their fields 0; a file with unexpected content is
    /// [`Error::Parse`].
    pub fn stats(&self) -> Result<Stats> {
        match self.version() {
            Version::V1 => self.stats_v1(),
            Version::V2 => {
                let Some(dir) = self.paths().into_iter().next() else {
                    return Ok(Stats::default());
                };
                stats_v2(&dir)
            }
        }
    }

    fn stats_v1(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        if let Some(dir) = self.path_for("cpuacct") {
            let cpu = &mut stats.cpu;
            cpu.usage_total_ns = number(&dir.join("cpuacct.usage"))?;
            let user = dir.join("cpuacct.usage_user");
            if user.exists() {
                cpu.usage_user_ns = number(&user)?;
                cpu.usage_kernel_ns = number(&dir.join("cpuacct.usage_sys"))?;
            } else {
                let file = dir.join("cpuacct.stat");
                let ticks = keyed(&file)?;
                let ns_per_tick = 1_000_000_000 / clock_ticks();
                cpu.usage_user_ns = ticks.get("user").copied().unwrap_or(0) * ns_per_tick;
                cpu.usage_kernel_ns = ticks.get("system").copied().unwrap_or(0) * ns_per_tick;
            }
            let file = dir.join("cpuacct.usage_percpu");
            if let Some(text) = sys::read_opt(&file)? {
                cpu.per_cpu_ns = text
                    .split_whitespace()
                    .map(|w| w.parse().map_err(|_| parse_error(&file, &text)))
                    .collect::<Result<_>>()?;
            }
        }
        if let Some(dir) = self.path_for("cpu") {
            let stat = keyed(&dir.join("cpu.stat"))?;
            let get = |k: &str| stat.get(k).copied().unwrap_or(0);
            stats.cpu.nr_periods = get("nr_periods");
            stats.cpu.nr_throttled = get("nr_throttled");
            stats.cpu.throttled_time_ns = get("throttled_time");
        }
        if let Some(dir) = self.path_for("memory") {
            stats.memory = memory_v1(&dir)?;
        }
        if let Some(dir) = self.path_for("pids") {
            stats.pids = pids(&dir)?;
        }
        if let Some(dir) = self.path_for("blkio") {
            stats.io = blkio_v1(&dir)?;
        }
        if let Some(dir) = self.path_for("hugetlb") {
            stats.hugetlb = hugetlb(&dir, Version::V1)?;
        }
        Ok(stats)
    }
}

fn stats_v2(dir: &Path) -> Result<Stats> {
    let mut stats = Stats::default();
    let cpu = keyed(&dir.join("cpu.stat"))?;
    let get = |k: &str| cpu.get(k).copied().unwrap_or(0);
    stats.cpu = CpuStats {
        usage_total_ns: get("usage_usec").saturating_mul(1000),
        usage_user_ns: get("user_usec").saturating_mul(1000),
        usage_kernel_ns: get("system_usec").saturating_mul(1000),
        per_cpu_ns: Vec::new(),
        nr_periods: get("nr_periods"),
        nr_throttled: get("nr_throttled"),
        throttled_time_ns: get("throttled_usec").saturating_mul(1000),
    };
    let stat = keyed(&dir.join("memory.stat"))?;
    let events = keyed(&dir.join("memory.events"))?;
    let s = |k: &str| stat.get(k).copied().unwrap_or(0);
    stats.memory = MemoryStats {
        usage: number(&dir.join("memory.current"))?,
        limit: limit(&dir.join("memory.max"))?,
        max_usage: number(&dir.join("memory.peak"))?,
        failcnt: events.get("max").copied().unwrap_or(0),
        swap_usage: number(&dir.join("memory.swap.current"))?,
        swap_limit: limit(&dir.join("memory.swap.max"))?,
        cache: s("file"),
        rss: s("anon"),
        mapped_file: s("file_mapped"),
        pgfault: s("pgfault"),
        pgmajfault: s("pgmajfault"),
        inactive_file: s("inactive_file"),
        active_file: s("active_file"),
        oom_kill: events.get("oom_kill").copied().unwrap_or(0),
        stat,
    };
    stats.pids = pids(dir)?;
    let file = dir.join("io.stat");
    if let Some(text) = sys::read_opt(&file)? {
        stats.io = parse_io_stat(&text).ok_or_else(|| parse_error(&file, &text))?;
    }
    stats.hugetlb = hugetlb(dir, Version::V2)?;
    Ok(stats)
}

fn memory_v1(dir: &Path) -> Result<MemoryStats> {
    let stat = keyed(&dir.join("memory.stat"))?;
    let s = |k: &str| stat.get(k).copied().unwrap_or(0);
    let usage = number(&dir.join("memory.usage_in_bytes"))?;
    let limit = limit(&dir.join("memory.limit_in_bytes"))?;
    let memsw_limit = dir.join("memory.memsw.limit_in_bytes");
    let (swap_usage, swap_limit) = if memsw_limit.exists() {
        let both = number(&dir.join("memory.memsw.usage_in_bytes"))?;
        let both_limit = self::limit(&memsw_limit)?;
        let swap_limit = if both_limit == u64::MAX {
            u64::MAX
        } else {
            both_limit.saturating_sub(limit)
        };
        (both.saturating_sub(usage), swap_limit)
    } else {
        (0, 0)
    };
    Ok(MemoryStats {
        usage,
        limit,
        max_usage: number(&dir.join("memory.max_usage_in_bytes"))?,
        failcnt: number(&dir.join("memory.failcnt"))?,
        swap_usage,
        swap_limit,
        cache: s("cache"),
        rss: s("rss"),
        mapped_file: s("mapped_file"),
        pgfault: s("pgfault"),
        pgmajfault: s("pgmajfault"),
        inactive_file: s("inactive_file"),
        active_file: s("active_file"),
        oom_kill: keyed(&dir.join("memory.oom_control"))?
            .get("oom_kill")
            .copied()
            .unwrap_or(0),
        stat,
    })
}

fn pids(dir: &Path) -> Result<PidsStats> {
    let limit = limit(&dir.join("pids.max"))?;
    Ok(PidsStats {
        current: number(&dir.join("pids.current"))?,
        limit: if limit == u64::MAX { 0 } else { limit },
    })
}

fn blkio_v1(dir: &Path) -> Result<Vec<IoDeviceStats>> {
    let pairs = [
        (
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_serviced_recursive",
        ),
        (
            "blkio.throttle.io_service_bytes",
            "blkio.throttle.io_serviced",
        ),
    ];
    for (bytes, ios) in pairs {
        let (bytes, ios) = (dir.join(bytes), dir.join(ios));
        let Some(bytes_text) = sys::read_opt(&bytes)? else {
            continue;
        };
        let ios_text = sys::read_opt(&ios)?.unwrap_or_default();
        let bytes_map = parse_blkio(&bytes_text).ok_or_else(|| parse_error(&bytes, &bytes_text))?;
        let ios_map = parse_blkio(&ios_text).ok_or_else(|| parse_error(&ios, &ios_text))?;
        let mut devices: BTreeMap<(u64, u64), IoDeviceStats> = BTreeMap::new();
        for (map, is_bytes) in [(bytes_map, true), (ios_map, false)] {
            for ((major, minor), (read, write)) in map {
                let d = devices.entry((major, minor)).or_insert(IoDeviceStats {
                    major,
                    minor,
                    ..IoDeviceStats::default()
                });
                if is_bytes {
                    d.read_bytes = read;
                    d.write_bytes = write;
                } else {
                    d.read_ios = read;
                    d.write_ios = write;
                }
            }
        }
        return Ok(devices.into_values().collect());
    }
    Ok(Vec::new())
}

/// Parses a v1 blkio file of `MAJ:MIN Op value` lines (and a final `Total
/// value`) into each device's (Read, Write).
pub(crate) fn parse_blkio(text: &str) -> Option<BTreeMap<(u64, u64), (u64, u64)>> {
    let mut devices = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [] | ["Total", _] => {}
            [device, op, value] => {
                let device = parse_device(device)?;
                let value: u64 = value.parse().ok()?;
                let entry: &mut (u64, u64) = devices.entry(device).or_default();
                match op {
                    "Read" => entry.0 = value,
                    "Write" => entry.1 = value,
                    _ => {}
                }
            }
            _ => return None,
        }
    }
    Some(devices)
}

/// Parses v2 `io.stat`: `MAJ:MIN key=value ...` lines.
pub(crate) fn parse_io_stat(text: &str) -> Option<Vec<IoDeviceStats>> {
    let mut devices = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(device) = fields.next() else {
            continue;
        };
        let (major, minor) = parse_device(device)?;
        let mut d = IoDeviceStats {
            major,
            minor,
            ..IoDeviceStats::default()
        };
        for field in fields {
            let (key, value) = field.split_once('=')?;
            let value: u64 = value.parse().ok()?;
            match key {
                "rbytes" => d.read_bytes = value,
                "wbytes" => d.write_bytes = value,
                "rios" => d.read_ios = value,
                "wios" => d.write_ios = value,
                _ => {}
            }
        }
        devices.push(d);
    }
    devices.sort_by_key(|d| (d.major, d.minor));
    Some(devices)
}

fn parse_device(device: &str) -> Option<(u64, u64)> {
    let (major, minor) = device.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn hugetlb(dir: &Path, version: Version) -> Result<Vec<HugetlbStats>> {
    let suffix = match version {
        Version::V1 => ".limit_in_bytes",
        Version::V2 => ".max",
    };
    let mut sizes: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| {
                let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
                (!size.is_empty() && !size.contains('.')).then(|| size.to_owned())
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_owned(),
                source,
            })
        }
    };
    sizes.sort();
    sizes
        .into_iter()
        .map(|size| {
            let file = |name: &str| dir.join(format!("hugetlb.{size}.{name}"));
            Ok(match version {
                Version::V1 => HugetlbStats {
                    usage: number(&file("usage_in_bytes"))?,
                    max_usage: number(&file("max_usage_in_bytes"))?,
                    failcnt: number(&file("failcnt"))?,
                    page_size: size,
                },
                Version::V2 => HugetlbStats {
                    usage: number(&file("current"))?,
                    max_usage: 0,
                    failcnt: keyed(&file("events"))?.get("max").copied().unwrap_or(0),
                    page_size: size,
                },
            })
        })
        .collect()
}

fn parse_error(path: &Path, text: &str) -> Error {
    Error::Parse {
        path: path.to_owned(),
        content: text.to_owned(),
    }
}

/// A file holding one number; 0 when missing.
fn number(path: &Path) -> Result<u64> {
    match sys::read_opt(path)? {
        None => Ok(0),
        Some(text) => text.trim().parse().map_err(|_| parse_error(path, &text)),
    }
}

/// A file holding a limit: `max` (or a v1 near-`i64::MAX` value) is
/// `u64::MAX`; 0 when missing.
fn limit(path: &Path) -> Result<u64> {
    match sys::read_opt(path)? {
        None => Ok(0),
        Some(text) if text.trim() == "max" => Ok(u64::MAX),
        Some(text) => {
            let value: u64 = text.trim().parse().map_err(|_| parse_error(path, &text))?;
            Ok(if value >= UNLIMITED { u64::MAX } else { value })
        }
    }
}

/// A file of `key value` lines (`memory.stat`, `cpu.stat`, `memory.events`,
/// `memory.oom_control`); empty when missing.
pub(crate) fn keyed(path: &Path) -> Result<BTreeMap<String, u64>> {
    match sys::read_opt(path)? {
        None => Ok(BTreeMap::new()),
        Some(text) => parse_keyed(&text).ok_or_else(|| parse_error(path, &text)),
    }
}

/// Parses `key value` lines.
pub(crate) fn parse_keyed(text: &str) -> Option<BTreeMap<String, u64>> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(key) = fields.next() else {
            continue;
        };
        let value = fields.next()?.parse().ok()?;
        if fields.next().is_some() {
            return None;
        }
        map.insert(key.to_owned(), value);
    }
    Some(map)
}

/// `USER_HZ`, the unit of `cpuacct.stat`.
fn clock_ticks() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t.unsigned_abs(),
        _ => 100,
    }
}
