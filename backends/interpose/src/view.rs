//! The system as the container sees it: memory, CPUs and uptime from its
//! limits rather than the host's, rendered into the `/proc` and `/sys` files
//! and the `sysinfo(2)` answer that programs size themselves by.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// What the container is given. Built by the runtime from the container's
/// resources, and passed to the supervisor process as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemView {
    /// When the container started: its uptime counts from here.
    pub started: SystemTime,
    /// The memory limit in bytes, if there is one.
    pub memory_limit: Option<u64>,
    /// The CPU quota and period in microseconds, if there is a quota.
    pub cpu_quota: Option<(u64, u64)>,
    /// The cpuset's CPU list (`0-3,6`), if the container has one.
    pub cpuset: Option<String>,
    /// The container's memory cgroup directory, to report live usage.
    pub memory_cgroup: Option<PathBuf>,
}

impl SystemView {
    /// A view of a container started at `started` with no limits: the
    /// host's memory and CPUs, the container's uptime.
    pub fn new(started: SystemTime) -> SystemView {
        SystemView {
            started,
            memory_limit: None,
            cpu_quota: None,
            cpuset: None,
            memory_cgroup: None,
        }
    }

    /// The view with a memory limit of `bytes`.
    pub fn with_memory_limit(mut self, bytes: u64) -> SystemView {
        self.memory_limit = Some(bytes);
        self
    }

    /// The view with a CPU quota of `quota` microseconds per `period`
    /// microseconds (CFS bandwidth control); the container then has
    /// `ceil(quota / period)` CPUs.
    pub fn with_cpu_quota(mut self, quota: u64, period: u64) -> SystemView {
        self.cpu_quota = Some((quota, period));
        self
    }

    /// The view with a cpuset (`0-3,6`).
    pub fn with_cpuset(mut self, cpus: impl Into<String>) -> SystemView {
        self.cpuset = Some(cpus.into());
        self
    }

    /// The view reading live memory usage from the memory cgroup at `dir`
    /// (cgroup v1 `memory.usage_in_bytes` or v2 `memory.current`).
    pub fn with_memory_cgroup(mut self, dir: impl Into<PathBuf>) -> SystemView {
        self.memory_cgroup = Some(dir.into());
        self
    }

    /// How many CPUs the container has, given the `host` CPUs it may run
    /// on: the smallest of the quota's, the cpuset's and the host's.
    pub(crate) fn cpus(&self, host: usize) -> usize {
        let quota = self
            .cpu_quota
            .filter(|&(q, p)| p > 0 && q > 0)
            .map(|(q, p)| q.div_ceil(p) as usize);
        let cpuset = self.cpuset.as_deref().and_then(count_cpu_list);
        [Some(host), quota, cpuset]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(host)
            .max(1)
    }

    /// Whether the view changes the CPU count the host reports.
    pub(crate) fn limits_cpus(&self) -> bool {
        self.cpu_quota.is_some() || self.cpuset.is_some()
    }

    /// Seconds since the container started.
    pub(crate) fn uptime(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.started)
            .unwrap_or_default()
    }

    /// Memory as the container sees it: total, free, and the part of the
    /// used memory that is page cache, in bytes. `None` without a limit.
    pub(crate) fn memory(&self) -> Option<Memory> {
        let total = self.memory_limit?;
        let (used, cache) = self
            .memory_cgroup
            .as_deref()
            .map(cgroup_usage)
            .unwrap_or((0, 0));
        let used = used.min(total);
        Some(Memory {
            total,
            free: total - used,
            cache: cache.min(used),
        })
    }

    /// `/proc/meminfo`: the host's file with the figures that tools size
    /// memory by replaced (`free`, `top` and friends compute "used" as
    /// total less free, buffers, page cache, reclaimable slab and shared
    /// memory, so all of these must come from the container, not the host).
    pub(crate) fn meminfo(&self, host: &str) -> String {
        let Some(mem) = self.memory() else {
            return host.to_owned();
        };
        let kib = |b: u64| b / 1024;
        host.lines()
            .map(|line| {
                let key = line.split(':').next().unwrap_or("");
                let value = match key {
                    "MemTotal" => Some(kib(mem.total)),
                    "MemFree" => Some(kib(mem.free)),
                    "MemAvailable" => Some(kib(mem.free + mem.cache)),
                    "Cached" => Some(kib(mem.cache)),
                    "Buffers" | "SwapCached" | "SwapTotal" | "SwapFree" | "Shmem"
                    | "SReclaimable" | "KReclaimable" => Some(0),
                    _ => None,
                };
                match value {
                    // The kernel's layout: the label padded to 16 columns,
                    // the number right-aligned in 8.
                    Some(v) => format!("{:<16}{v:>8} kB\n", format!("{key}:")),
                    None => format!("{line}\n"),
                }
            })
            .collect()
    }

    /// `/proc/cpuinfo`: the host's entries of the first `cpus` processors.
    pub(crate) fn cpuinfo(&self, host: &str, cpus: usize) -> String {
        let mut out = String::new();
        for block in host
            .split("\n\n")
            .filter(|b| !b.trim().is_empty())
            .take(cpus)
        {
            for line in block.lines() {
                let key = line.split(':').next().unwrap_or("").trim();
                match key {
                    "siblings" | "cpu cores" => out.push_str(&format!("{key}\t\t: {cpus}\n")),
                    _ => {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
            out.push('\n');
        }
        out
    }

    /// `/proc/stat`: the host's file with the first `cpus` CPU lines and an
    /// aggregate line summing them.
    pub(crate) fn stat(&self, host: &str, cpus: usize) -> String {
        let per_cpu: Vec<&str> = host
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .take(cpus)
            .collect();
        let mut sum: Vec<u64> = Vec::new();
        for line in &per_cpu {
            for (i, v) in line.split_whitespace().skip(1).enumerate() {
                let v: u64 = v.parse().unwrap_or(0);
                if i < sum.len() {
                    sum[i] += v;
                } else {
                    sum.push(v);
                }
            }
        }
        let mut out = String::from("cpu ");
        for v in &sum {
            out.push_str(&format!(" {v}"));
        }
        out.push('\n');
        for line in per_cpu {
            out.push_str(line);
            out.push('\n');
        }
        for line in host.lines().filter(|l| !l.starts_with("cpu")) {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// `/proc/uptime`: the container's uptime; idle time is not tracked
    /// per container and reads as zero.
    pub(crate) fn uptime_file(&self) -> String {
        let up = self.uptime();
        format!("{}.{:02} 0.00\n", up.as_secs(), up.subsec_millis() / 10)
    }

    /// `/sys/devices/system/cpu/online`.
    pub(crate) fn online(&self, cpus: usize) -> String {
        match cpus {
            1 => "0\n".to_owned(),
            n => format!("0-{}\n", n - 1),
        }
    }
}

/// Memory figures of the view, in bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Memory {
    /// The limit.
    pub total: u64,
    /// The limit less what the cgroup uses.
    pub free: u64,
    /// Page cache within what the cgroup uses.
    pub cache: u64,
}

/// How many CPUs a list such as `0-3,6` names; `None` if it does not parse.
fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (usize, usize) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
        n += hi.checked_sub(lo)? + 1;
    }
    (n > 0).then_some(n)
}

/// The memory cgroup's usage and page cache in bytes (v1 or v2 files);
/// zeros when unreadable.
fn cgroup_usage(dir: &Path) -> (u64, u64) {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let used = read("memory.current")
        .or_else(|| read("memory.usage_in_bytes"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let cache = read("memory.stat")
        .and_then(|stat| {
            stat.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                // v2 names page cache "file", v1 "total_cache".
                (k == "file" || k == "total_cache").then(|| v.trim().parse().ok())?
            })
        })
        .unwrap_or(0);
    (used, cache)
}
