//! Turns a container's cgroup statistics into the `Metrics` message
//! containerd expects from `Stats`: the cgroup v1 or the v2 one, by the
//! hierarchy the container lives in, so `ctr task metrics` prints them.

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use strata_backend::Metrics;
use strata_cgroups::{Stats, Version};

use crate::error::{Result, TaskError};

/// The type URLs containerd decodes the two messages by.
const V1_TYPE: &str = "io.containerd.cgroups.v1.Metrics";
const V2_TYPE: &str = "io.containerd.cgroups.v2.Metrics";

/// Encodes `metrics` as the `Any` of a `StatsResponse`.
pub fn to_any(metrics: &Metrics) -> Result<Any> {
    let (type_url, value) = match metrics.version {
        Version::V1 => (V1_TYPE, v1_metrics(&metrics.stats).write_to_bytes()),
        Version::V2 => (V2_TYPE, v2_metrics(&metrics.stats).write_to_bytes()),
    };
    Ok(Any {
        type_url: type_url.into(),
        value: value.map_err(|e| TaskError::Internal(format!("encoding metrics: {e}")))?,
        ..Default::default()
    })
}

fn v1_metrics(s: &Stats) -> v1::Metrics {
    let entry = |usage, limit, max, failcnt| v1::MemoryEntry {
        usage,
        limit,
        max,
        failcnt,
        ..Default::default()
    };
    let blkio_entries = |op: &str, value: fn(&strata_cgroups::IoDeviceStats) -> u64| {
        s.io.iter()
            .map(|d| v1::BlkIOEntry {
                op: op.into(),
                major: d.major,
                minor: d.minor,
                value: value(d),
                ..Default::default()
            })
            .collect::<Vec<_>>()
    };
    let mut bytes = blkio_entries("Read", |d| d.read_bytes);
    bytes.extend(blkio_entries("Write", |d| d.write_bytes));
    let mut serviced = blkio_entries("Read", |d| d.read_ios);
    serviced.extend(blkio_entries("Write", |d| d.write_ios));
    v1::Metrics {
        cpu: Some(v1::CPUStat {
            usage: Some(v1::CPUUsage {
                total: s.cpu.usage_total_ns,
                kernel: s.cpu.usage_kernel_ns,
                user: s.cpu.usage_user_ns,
                per_cpu: s.cpu.per_cpu_ns.clone(),
                ..Default::default()
            })
            .into(),
            throttling: Some(v1::Throttle {
                periods: s.cpu.nr_periods,
                throttled_periods: s.cpu.nr_throttled,
                throttled_time: s.cpu.throttled_time_ns,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        memory: Some(v1::MemoryStat {
            cache: s.memory.cache,
            rss: s.memory.rss,
            mapped_file: s.memory.mapped_file,
            pg_fault: s.memory.pgfault,
            pg_maj_fault: s.memory.pgmajfault,
            inactive_file: s.memory.inactive_file,
            active_file: s.memory.active_file,
            usage: Some(entry(
                s.memory.usage,
                s.memory.limit,
                s.memory.max_usage,
                s.memory.failcnt,
            ))
            .into(),
            swap: Some(entry(s.memory.swap_usage, s.memory.swap_limit, 0, 0)).into(),
            ..Default::default()
        })
        .into(),
        memory_oom_control: Some(v1::MemoryOomControl {
            oom_kill: s.memory.oom_kill,
            ..Default::default()
        })
        .into(),
        pids: Some(v1::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        })
        .into(),
        blkio: Some(v1::BlkIOStat {
            io_service_bytes_recursive: bytes,
            io_serviced_recursive: serviced,
            ..Default::default()
        })
        .into(),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|h| v1::HugetlbStat {
                usage: h.usage,
                max: h.max_usage,
                failcnt: h.failcnt,
                pagesize: h.page_size.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn v2_metrics(s: &Stats) -> v2::Metrics {
    let stat = |key: &str| s.memory.stat.get(key).copied().unwrap_or(0);
    v2::Metrics {
        cpu: Some(v2::CPUStat {
            usage_usec: s.cpu.usage_total_ns / 1000,
            user_usec: s.cpu.usage_user_ns / 1000,
            system_usec: s.cpu.usage_kernel_ns / 1000,
            nr_periods: s.cpu.nr_periods,
            nr_throttled: s.cpu.nr_throttled,
            throttled_usec: s.cpu.throttled_time_ns / 1000,
            ..Default::default()
        })
        .into(),
        memory: Some(v2::MemoryStat {
            anon: s.memory.rss,
            file: s.memory.cache,
            file_mapped: s.memory.mapped_file,
            kernel_stack: stat("kernel_stack"),
            slab: stat("slab"),
            sock: stat("sock"),
            shmem: stat("shmem"),
            inactive_file: s.memory.inactive_file,
            active_file: s.memory.active_file,
            pgfault: s.memory.pgfault,
            pgmajfault: s.memory.pgmajfault,
            usage: s.memory.usage,
            usage_limit: s.memory.limit,
            swap_usage: s.memory.swap_usage,
            swap_limit: s.memory.swap_limit,
            ..Default::default()
        })
        .into(),
        memory_events: Some(v2::MemoryEvents {
            oom_kill: s.memory.oom_kill,
            ..Default::default()
        })
        .into(),
        pids: Some(v2::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        })
        .into(),
        io: Some(v2::IOStat {
            usage: s
                .io
                .iter()
                .map(|d| v2::IOEntry {
                    major: d.major,
                    minor: d.minor,
                    rbytes: d.read_bytes,
                    wbytes: d.write_bytes,
                    rios: d.read_ios,
                    wios: d.write_ios,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .into(),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|h| v2::HugeTlbStat {
                current: h.usage,
                max: h.max_usage,
                failcnt: h.failcnt,
                pagesize: h.page_size.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stats {
        let mut s = Stats::default();
        s.cpu.usage_total_ns = 5_000_000;
        s.memory.usage = 4096;
        s.memory.limit = 1 << 20;
        s.memory.oom_kill = 2;
        s.pids.current = 3;
        s
    }

    #[test]
    fn v1_metrics_carry_the_numbers_under_containerds_type() {
        let any = to_any(&Metrics {
            version: Version::V1,
            stats: sample(),
        })
        .unwrap();
        assert_eq!(any.type_url, V1_TYPE);
        let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.usage.limit, 1 << 20);
        assert_eq!(m.memory_oom_control.oom_kill, 2);
        assert_eq!(m.pids.current, 3);
    }

    #[test]
    fn v2_metrics_are_in_microseconds() {
        let any = to_any(&Metrics {
            version: Version::V2,
            stats: sample(),
        })
        .unwrap();
        assert_eq!(any.type_url, V2_TYPE);
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage_usec, 5_000);
        assert_eq!(m.memory.usage_limit, 1 << 20);
        assert_eq!(m.memory_events.oom_kill, 2);
    }
}
