//! Work inside containers: the probe program of the test image
//! (`strata-probe`) measures system call costs, file throughput on the
//! container's root file system and on a tmpfs, and loopback TCP, and runs
//! the isolation checks.
//!
//! One container per runtime and round runs them all, one probe after the
//! other, from a shell that is the container's PID 1 (so the isolation
//! checks have a PID 1 other than themselves to try to trace); the runtimes
//! are interleaved within every round, and the isolation checks run in the
//! first round only. A measurement that printed nothing on a runtime is
//! recorded as a failure with what the probe said on stderr; the others
//! still count.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use strata_e2e::image::PROBE_PATH;
use strata_e2e::{Containerd, RunOptions};

use crate::isolation::{self, Check};
use crate::metrics::{Collector, Key};
use crate::rounds::{self, Failure};
use crate::runtimes::Runtime;

/// Where the tmpfs of the file measurement is mounted in the container.
const TMPFS_DIR: &str = "/bench-tmpfs";

/// Where the root-file-system file measurement writes (a directory of the
/// image, not a mount).
const ROOTFS_DIR: &str = "/tmp";

/// How long one probe container may take beyond the probes' own run time.
const SLACK: Duration = Duration::from_secs(120);

/// The measurements of a probe container, as named in failures.
const MEASUREMENTS: [&str; 5] = [
    "syscalls",
    "fileio rootfs",
    "fileio tmpfs",
    "tcp",
    "isolation",
];

/// What the workload measurements do; see `Config` in the report.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Probe containers per runtime.
    pub rounds: usize,
    /// `strata-probe syscalls --iterations`.
    pub syscall_iterations: u64,
    /// MiB written and read per file measurement.
    pub fileio_mib: u64,
    /// Seconds of each TCP probe run (half bulk, half request/response).
    pub tcp_seconds: f64,
}

/// The shell script a probe container runs: every probe in turn, whatever
/// the previous one did, then success (so a failing probe shows up as
/// missing results, not as a failed container). The tmpfs file
/// measurement comes last, as the one that may exhaust a guest's memory.
fn script(plan: &Plan, isolation_args: Option<&str>) -> String {
    let mut steps = vec![
        format!(
            "{PROBE_PATH} syscalls --iterations {}",
            plan.syscall_iterations
        ),
        format!(
            "{PROBE_PATH} fileio --size {} --dir {ROOTFS_DIR}",
            plan.fileio_mib
        ),
        format!("{PROBE_PATH} tcp --seconds {}", plan.tcp_seconds),
    ];
    if let Some(args) = isolation_args {
        steps.push(format!("{PROBE_PATH} isolation {args}"));
    }
    // Last: a tmpfs file costs memory, which a small guest may run out of.
    steps.push(format!(
        "{PROBE_PATH} fileio --size {} --dir {TMPFS_DIR}",
        plan.fileio_mib
    ));
    steps.push("exit 0".to_owned());
    steps.join("; ")
}

/// The measurement a line of probe output belongs to.
fn measurement_of(line: &Value) -> Option<&'static str> {
    if line.get("op").is_some() {
        return Some("syscalls");
    }
    if line.get("probe").is_some() {
        return Some("isolation");
    }
    match line["test"].as_str()? {
        "write" | "read" if line["dir"].as_str() == Some(TMPFS_DIR) => Some("fileio tmpfs"),
        "write" | "read" => Some("fileio rootfs"),
        "stream" | "request_response" => Some("tcp"),
        _ => None,
    }
}

fn number(v: &Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .filter(|x| x.is_finite())
        .with_context(|| format!("no number {key:?} in {v}"))
}

fn text<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v[key]
        .as_str()
        .with_context(|| format!("no string {key:?} in {v}"))
}

/// Adds the sample of one line of probe output to `col`.
fn record(col: &mut Collector, line: &Value, measurement: &str) -> Result<()> {
    match measurement {
        "syscalls" => {
            let key = Key {
                group: "syscalls",
                name: text(line, "op")?,
                unit: "ns",
                higher_is_better: false,
            };
            col.push(key, number(line, "ns_per_op")?);
        }
        "fileio rootfs" | "fileio tmpfs" => {
            let fs = measurement.trim_start_matches("fileio ");
            let name = format!("{fs} {}", text(line, "test")?);
            let key = Key {
                group: "fileio",
                name: &name,
                unit: "MiB/s",
                higher_is_better: true,
            };
            col.push(key, number(line, "mib_per_s")?);
        }
        "tcp" => {
            let (name, unit, field) = match text(line, "test")? {
                "stream" => ("stream", "MiB/s", "mib_per_s"),
                _ => ("64-byte request/response", "1/s", "requests_per_s"),
            };
            let key = Key {
                group: "tcp",
                name,
                unit,
                higher_is_better: true,
            };
            col.push(key, number(line, field)?);
        }
        other => bail!("no samples in a {other} line"),
    }
    Ok(())
}

/// Runs the probe container of round `round` on `rt`: its output lines
/// and what it said on standard error (with its exit code if it failed).
fn run_container(
    c: &Containerd,
    rt: &Runtime,
    round: usize,
    plan: &Plan,
    isolation_args: Option<&str>,
) -> Result<(Vec<Value>, String)> {
    let id = format!("probe-{}-{round}", rt.label);
    // Room for the file and some slack.
    let mount = format!(
        "type=tmpfs,src=tmpfs,dst={TMPFS_DIR},options=size={}m",
        plan.fileio_mib + 16
    );
    let opts = RunOptions::new(&id, ["sh", "-c", &script(plan, isolation_args)])
        .runtime(&rt.name)
        .flag("--mount")
        .flag(&mount)
        .timeout(SLACK + Duration::from_secs_f64(plan.tcp_seconds));
    let out = c.run(&opts)?;
    // A container that was killed midway still printed what it measured
    // before; only its last line may be cut short.
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    ensure!(
        out.success() || !lines.is_empty(),
        "the probe container {id} failed: {out}"
    );
    let said = if out.success() {
        out.stderr.trim().to_owned()
    } else {
        format!("the container exited {}; {}", out.code, out.stderr.trim())
    };
    Ok((lines, said))
}

/// Runs `plan.rounds` probe containers per runtime, interleaved; adds the
/// samples to each runtime's collector and returns each runtime's
/// isolation checks.
pub fn measure(
    c: &Containerd,
    runtimes: &[Runtime],
    collectors: &mut [Collector],
    plan: &Plan,
    failures: &mut Vec<Failure>,
) -> Result<Vec<Vec<Check>>> {
    // A host address the containers must not reach, listening throughout.
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .context("listening on the host's loopback")?;
    let args = isolation::probe_args(c, &listener.local_addr()?);
    let mut checks = vec![Vec::new(); runtimes.len()];
    let mut missing: Vec<Failure> = Vec::new();
    let mut reported = BTreeSet::new();
    rounds::interleaved(runtimes, plan.rounds, "probe", failures, |i, rt, r| {
        let iso = (r == 0).then_some(args.as_str());
        let started = Instant::now();
        let (lines, stderr) = run_container(c, rt, r, plan, iso)?;
        for line in &lines {
            match measurement_of(line) {
                Some("isolation") => checks[i].push(isolation::check_of(line)),
                Some(m) => record(&mut collectors[i], line, m)?,
                None => bail!("the probe printed an unknown line: {line}"),
            }
        }
        for m in MEASUREMENTS {
            let expected = m != "isolation" || r == 0;
            let found = lines.iter().any(|l| measurement_of(l) == Some(m));
            if expected && !found && reported.insert((i, m)) {
                missing.push(Failure {
                    label: rt.label.clone(),
                    measurement: m.to_owned(),
                    error: format!("the probe printed no {m} results; {stderr}"),
                });
                eprintln!("[probe] {}: no {m} results; {stderr}", rt.label);
            }
        }
        eprintln!(
            "[probe] {} round {}/{}: {} results in {:.1} s",
            rt.label,
            r + 1,
            plan.rounds,
            lines.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    });
    failures.extend(missing);
    drop(listener);
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_are_sorted_by_measurement() {
        assert_eq!(measurement_of(&json!({"op": "stat"})), Some("syscalls"));
        assert_eq!(
            measurement_of(&json!({"test": "read", "dir": "/tmp"})),
            Some("fileio rootfs")
        );
        assert_eq!(
            measurement_of(&json!({"test": "write", "dir": TMPFS_DIR})),
            Some("fileio tmpfs")
        );
        assert_eq!(measurement_of(&json!({"test": "stream"})), Some("tcp"));
        assert_eq!(measurement_of(&json!({"probe": "bpf"})), Some("isolation"));
        assert_eq!(measurement_of(&json!({"x": 1})), None);
    }

    #[test]
    fn samples_are_recorded() {
        let mut col = Collector::default();
        let line = json!({"test": "write", "dir": TMPFS_DIR, "mib_per_s": 5.0});
        record(&mut col, &line, "fileio tmpfs").unwrap();
        let line = json!({"op": "stat", "ns_per_op": 7.0});
        record(&mut col, &line, "syscalls").unwrap();
        assert!(record(&mut col, &json!({"op": "stat"}), "syscalls").is_err());
        let m = col.finish();
        assert_eq!(m[0].name, "tmpfs write");
        assert_eq!(m[1].summary.median, 7.0);
    }

    #[test]
    fn script_runs_every_probe() {
        let plan = Plan {
            rounds: 1,
            syscall_iterations: 5,
            fileio_mib: 3,
            tcp_seconds: 0.5,
        };
        let s = script(&plan, Some("--denied 127.0.0.1:9"));
        for part in [
            "syscalls --iterations 5",
            "fileio --size 3 --dir /tmp",
            "fileio --size 3 --dir /bench-tmpfs",
            "tcp --seconds 0.5",
            "isolation --denied 127.0.0.1:9",
        ] {
            assert!(s.contains(part), "{s} lacks {part}");
        }
        assert!(s.ends_with("--dir /bench-tmpfs; exit 0"));
        assert!(!script(&plan, None).contains("isolation"));
    }
}
