//! `events`: a container's resource usage as `stats` events, once
//! (`--stats`) or every `--interval` until the container stops.

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};
use strata_cgroups::Stats;

use crate::args::EventsArgs;
use crate::commands::common::{Container, Context};
use crate::error::{Error, Result};
use crate::state::Status;

/// `strata events [--stats] [--interval D] ID`.
pub fn run(ctx: &Context, args: &EventsArgs) -> Result<i32> {
    let interval = parse_duration(&args.interval)?;
    loop {
        let container = Container::open(ctx, &args.id)?;
        if container.status(ctx) == Status::Stopped {
            if args.stats {
                return Err(Error::State(format!(
                    "container with id {} is not running",
                    args.id
                )));
            }
            return Ok(0);
        }
        let stats = container.cgroup(ctx)?.stats()?;
        drop(container);
        let event = json!({"type": "stats", "id": args.id, "data": stats_json(&stats)});
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{event}")
            .and_then(|()| stdout.flush())
            .map_err(|e| Error::io("writing the event", e))?;
        if args.stats {
            return Ok(0);
        }
        std::thread::sleep(interval);
    }
}

/// `stats` in the shape OCI runtimes print as a stats event's `data`.
fn stats_json(stats: &Stats) -> Value {
    let cpu = &stats.cpu;
    let memory = &stats.memory;
    let hugetlb: serde_json::Map<String, Value> = stats
        .hugetlb
        .iter()
        .map(|h| {
            (
                h.page_size.clone(),
                json!({"usage": h.usage, "max": h.max_usage, "failcnt": h.failcnt}),
            )
        })
        .collect();
    let io_entries = |pick: fn(&strata_cgroups::IoDeviceStats) -> (u64, u64)| {
        stats
            .io
            .iter()
            .flat_map(|d| {
                let (read, write) = pick(d);
                [
                    json!({"major": d.major, "minor": d.minor, "op": "Read", "value": read}),
                    json!({"major": d.major, "minor": d.minor, "op": "Write", "value": write}),
                ]
            })
            .collect::<Vec<_>>()
    };
    json!({
        "cpu": {
            "usage": {
                "total": cpu.usage_total_ns,
                "percpu": cpu.per_cpu_ns,
                "kernel": cpu.usage_kernel_ns,
                "user": cpu.usage_user_ns,
            },
            "throttling": {
                "periods": cpu.nr_periods,
                "throttledPeriods": cpu.nr_throttled,
                "throttledTime": cpu.throttled_time_ns,
            },
        },
        "memory": {
            "cache": memory.cache,
            "usage": {
                "limit": memory.limit,
                "usage": memory.usage,
                "max": memory.max_usage,
                "failcnt": memory.failcnt,
            },
            "swap": {
                "limit": memory.swap_limit,
                "usage": memory.swap_usage,
                "failcnt": 0,
            },
            "raw": memory.stat,
        },
        "pids": {
            "current": stats.pids.current,
            "limit": stats.pids.limit,
        },
        "blkio": {
            "ioServiceBytesRecursive": io_entries(|d| (d.read_bytes, d.write_bytes)),
            "ioServicedRecursive": io_entries(|d| (d.read_ios, d.write_ios)),
        },
        "hugetlb": hugetlb,
    })
}

/// Parses `5s`, `500ms`, `1m`, `2h` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration> {
    let invalid = || Error::Usage(format!("invalid interval {text:?}"));
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(invalid()),
    };
    if seconds <= 0.0 {
        return Err(Error::Usage(
            "duration interval must be greater than 0".into(),
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").expect("5s"), Duration::from_secs(5));
        assert_eq!(
            parse_duration("250ms").expect("ms"),
            Duration::from_millis(250)
        );
        assert_eq!(parse_duration("2m").expect("m"), Duration::from_secs(120));
        assert_eq!(parse_duration("3").expect("bare"), Duration::from_secs(3));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn stats_have_the_event_shape() {
        let mut stats = Stats::default();
        stats.cpu.usage_total_ns = 5;
        stats.pids.current = 2;
        stats.memory.usage = 4096;
        let data = stats_json(&stats);
        assert_eq!(data["cpu"]["usage"]["total"], 5);
        assert_eq!(data["pids"]["current"], 2);
        assert_eq!(data["memory"]["usage"]["usage"], 4096);
    }
}
