//! `update`: changes a running container's resource limits, from flags or
//! an OCI `linux.resources` JSON file, and remembers them in its stored
//! spec.

use std::io::Read;

use oci_spec::runtime::LinuxResources;
use serde_json::{json, Map, Value};

use crate::args::UpdateArgs;
use crate::commands::common::{Container, Context};
use crate::error::{Error, Result};
use crate::state::Status;

/// `strata update [limits…] ID`.
pub fn run(ctx: &Context, args: &UpdateArgs) -> Result<i32> {
    let changes = changes(args)?;
    let resources: LinuxResources = serde_json::from_value(changes.clone())
        .map_err(|e| Error::Usage(format!("invalid resources: {e}")))?;
    let mut container = Container::open(ctx, &args.id)?;
    if container.status(ctx) == Status::Stopped {
        return Err(Error::NotRunning(args.id.clone()));
    }
    ctx.runtime()?
        .update(container.id(), &container.spec, &resources)?;
    let mut spec = serde_json::to_value(&container.spec)
        .map_err(|e| Error::io("encoding the spec", e.into()))?;
    merge(&mut spec["linux"]["resources"], changes);
    container.spec = serde_json::from_value(spec)
        .map_err(|e| Error::Spec(format!("updated spec is invalid: {e}")))?;
    container.locked.save_spec(&container.spec)?;
    Ok(0)
}

/// The resources to change, as OCI `linux.resources` JSON: the file's,
/// then the flags'.
fn changes(args: &UpdateArgs) -> Result<Value> {
    let mut value = match &args.resources {
        Some(path) => {
            let mut text = Vec::new();
            if path.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_end(&mut text)
                    .map_err(|e| Error::io("reading resources from standard input", e))?;
            } else {
                text = std::fs::read(path).map_err(|e| Error::path("reading", path, e))?;
            }
            serde_json::from_slice(&text)
                .map_err(|e| Error::Usage(format!("parsing {}: {e}", path.display())))?
        }
        None => json!({}),
    };
    let mut set = |section: &str, key: &str, v: Value| {
        value[section][key] = v;
    };
    if let Some(m) = &args.memory {
        set("memory", "limit", json!(bytes(m, "memory")?));
    }
    if let Some(m) = &args.memory_reservation {
        set(
            "memory",
            "reservation",
            json!(bytes(m, "memory-reservation")?),
        );
    }
    if let Some(m) = &args.memory_swap {
        set("memory", "swap", json!(bytes(m, "memory-swap")?));
    }
    if let Some(v) = args.cpu_shares {
        set("cpu", "shares", json!(v));
    }
    if let Some(v) = args.cpu_quota {
        set("cpu", "quota", json!(v));
    }
    if let Some(v) = args.cpu_period {
        set("cpu", "period", json!(v));
    }
    if let Some(v) = args.cpu_rt_period {
        set("cpu", "realtimePeriod", json!(v));
    }
    if let Some(v) = args.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", json!(v));
    }
    if let Some(v) = &args.cpuset_cpus {
        set("cpu", "cpus", json!(v));
    }
    if let Some(v) = &args.cpuset_mems {
        set("cpu", "mems", json!(v));
    }
    if let Some(v) = args.pids_limit {
        set("pids", "limit", json!(v));
    }
    if let Some(v) = args.blkio_weight {
        set("blockIO", "weight", json!(v));
    }
    Ok(value)
}

/// Parses a byte count: a number with an optional `k`, `m`, `g` or `t`
/// suffix (powers of 1024, `b`/`B` after it allowed), or `-1` for no limit.
fn bytes(text: &str, flag: &str) -> Result<i64> {
    let invalid = || Error::Usage(format!("invalid value for {flag}: {text:?}"));
    let lower = text.trim().to_ascii_lowercase();
    if lower == "-1" {
        return Ok(-1);
    }
    let number = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, scale) = match number.chars().last() {
        Some('k') => (&number[..number.len() - 1], 1i64 << 10),
        Some('m') => (&number[..number.len() - 1], 1 << 20),
        Some('g') => (&number[..number.len() - 1], 1 << 30),
        Some('t') => (&number[..number.len() - 1], 1 << 40),
        _ => (number, 1),
    };
    let value: f64 = digits.parse().map_err(|_| invalid())?;
    if value.is_nan() || value < 0.0 {
        return Err(invalid());
    }
    Ok((value * scale as f64) as i64)
}

/// Merges `changes` into `target`, object by object.
fn merge(target: &mut Value, changes: Value) {
    match (target, changes) {
        (Value::Object(target), Value::Object(changes)) => {
            for (key, value) in changes {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target @ Value::Null, Value::Object(changes)) => {
            let mut object = Map::new();
            for (key, value) in changes {
                object.insert(key, value);
            }
            *target = Value::Object(object);
        }
        (target, value) => *target = value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn byte_counts() {
        assert_eq!(bytes("1024", "m").expect("plain"), 1024);
        assert_eq!(bytes("64k", "m").expect("k"), 65_536);
        assert_eq!(bytes("100M", "m").expect("M"), 100 << 20);
        assert_eq!(bytes("1gb", "m").expect("gb"), 1 << 30);
        assert_eq!(bytes("-1", "m").expect("unlimited"), -1);
        assert!(bytes("lots", "m").is_err());
        assert!(bytes("-5", "m").is_err());
    }

    #[test]
    fn flags_become_resources() {
        let cli = crate::args::Cli::try_parse_from([
            "strata",
            "update",
            "--memory",
            "64m",
            "--cpu-quota",
            "-1",
            "--cpu-share",
            "512",
            "--pids-limit",
            "20",
            "c1",
        ])
        .expect("parses");
        let Some(crate::args::Command::Update(args)) = cli.command else {
            panic!("not update");
        };
        let value = changes(&args).expect("changes");
        let r: LinuxResources = serde_json::from_value(value).expect("resources");
        assert_eq!(r.memory().as_ref().and_then(|m| m.limit()), Some(64 << 20));
        assert_eq!(r.cpu().as_ref().and_then(|c| c.quota()), Some(-1));
        assert_eq!(r.cpu().as_ref().and_then(|c| c.shares()), Some(512));
        assert_eq!(r.pids().as_ref().map(|p| p.limit()), Some(20));
    }

    #[test]
    fn merging_keeps_other_settings() {
        let mut spec = json!({"linux": {"resources": {"memory": {"limit": 1, "swap": 2}}}});
        merge(
            &mut spec["linux"]["resources"],
            json!({"memory": {"limit": 5}, "pids": {"limit": 3}}),
        );
        assert_eq!(
            spec,
            json!({"linux": {"resources": {"memory": {"limit": 5, "swap": 2}, "pids": {"limit": 3}}}})
        );
        let mut empty = json!({"linux": {}});
        merge(
            &mut empty["linux"]["resources"],
            json!({"pids": {"limit": 3}}),
        );
        assert_eq!(
            empty,
            json!({"linux": {"resources": {"pids": {"limit": 3}}}})
        );
    }
}
