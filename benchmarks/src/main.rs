//! Strata's isolation classes measured next to runc
//! (`io.containerd.runc.v2`) in the same run against one private
//! containerd (the end-to-end fixture of `strata-e2e`): start latency,
//! system call costs, file and TCP throughput inside the container (with
//! the `strata-probe` program of the test image), memory per container,
//! density, and an isolation matrix.
//!
//! ```text
//! cargo build --release -p strata-shim
//! cargo run --release -p benchmarks -- [--quick] [--out DIR] [--runs N] [--shim PATH]
//!                                      [--classes native,interpose,microvm]
//! ```
//!
//! Needs root, containerd, runc and busybox-static, like the end-to-end
//! tests. A class whose first container fails to run is skipped, with the
//! reason in the report. Progress goes to stderr; the Markdown report goes
//! to stdout and, with the raw numbers as JSON and one SVG chart per group,
//! to `DIR/<YYYY-MM-DD-HHMMSS>/` (`DIR` is `benchmarks/results` by
//! default).

mod charts;
mod groups;
mod isolation;
mod latency;
mod memory;
mod metrics;
mod report;
mod rounds;
mod runtimes;
mod stats;
mod workload;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use strata_e2e::containerd::{SHIM_CLASSES, SHIM_NAME};
use strata_e2e::{Containerd, ContainerdOptions, HostSnapshot, RUNC};

use crate::metrics::{Collector, Key};
use crate::report::{Config, Host, Results, RuntimeResults};
use crate::workload::Plan;

/// The runc shim's binary name.
const RUNC_SHIM_NAME: &str = "containerd-shim-runc-v2";

/// Untimed runs per runtime before the timed serial runs (full, quick).
const WARMUP: (usize, usize) = (2, 1);

/// Containers per parallel burst (full, quick).
const PARALLEL: (usize, usize) = (20, 5);

/// The full or the quick value of a `(full, quick)` pair.
fn pick<T>(pair: (T, T), quick: bool) -> T {
    if quick {
        pair.1
    } else {
        pair.0
    }
}

const USAGE: &str = "\
usage: benchmarks [--quick] [--out DIR] [--runs N] [--shim PATH] [--classes LIST]

  --quick         fewer and smaller runs per runtime: 3 serial starts, one
                  burst of 5, one probe container, 10 idle containers
  --out DIR       where to create the <YYYY-MM-DD-HHMMSS> result directory
                  (default: benchmarks/results)
  --runs N        timed serial start runs per runtime (default 30, quick 3)
  --shim PATH     the Strata shim binary
                  (default: target/release/containerd-shim-strata-v2)
  --classes LIST  Strata classes to measure next to runc, comma-separated
                  (default: native,interpose,microvm)";

/// Command-line options.
#[derive(Debug, Default, PartialEq)]
struct Args {
    quick: bool,
    out: Option<PathBuf>,
    runs: Option<usize>,
    shim: Option<PathBuf>,
    classes: Option<Vec<String>>,
    help: bool,
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Args> {
    let mut out = Args::default();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a:?} needs a value"));
        match a.to_str() {
            Some("--quick") => out.quick = true,
            Some("--out") => out.out = Some(value()?.into()),
            Some("--shim") => out.shim = Some(value()?.into()),
            Some("--classes") => {
                let v = value()?;
                let list = v
                    .to_str()
                    .with_context(|| format!("--classes takes class names, not {v:?}"))?;
                out.classes = Some(runtimes::parse_classes(list)?);
            }
            Some("--runs") => {
                let v = value()?;
                let n: usize = v
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("--runs takes a number, not {v:?}"))?;
                ensure!(n > 0, "--runs must be at least 1");
                out.runs = Some(n);
            }
            Some("-h" | "--help") => out.help = true,
            _ => bail!("unknown argument {a:?}\n{USAGE}"),
        }
    }
    Ok(out)
}

/// `target/release/containerd-shim-strata-v2` of the target directory this
/// program was built in.
fn default_shim() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().unwrap_or(Path::new("."));
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    let target = dir.parent().unwrap_or(dir);
    target.join("release").join(SHIM_NAME)
}

/// The first `name` on `PATH`, canonicalised.
fn find_in_path(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not on PATH"))
        .and_then(|p| fs::canonicalize(&p).with_context(|| format!("resolving {}", p.display())))
}

/// The local time now, as a directory stamp (`YYYY-MM-DD-HHMMSS`) and in
/// ISO 8601.
fn now() -> Result<(String, String)> {
    let out = Command::new("date")
        .arg("+%Y-%m-%d-%H%M%S %Y-%m-%dT%H:%M:%S%z")
        .output()
        .context("running date")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (stamp, iso) = text
        .trim()
        .split_once(' ')
        .with_context(|| format!("unexpected output of date: {text:?}"))?;
    Ok((stamp.to_owned(), iso.to_owned()))
}

/// `git describe --always --dirty` of this source tree, or `unknown`.
fn revision() -> String {
    Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Warns if the run left anything behind beyond what the fixture's own
/// teardown removes; gives shims a few seconds to exit first.
fn warn_leftovers(c: &Containerd, before: &HostSnapshot) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = c.leftovers(before);
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "warning: the benchmark left things behind (the fixture removes them):\n  {}",
                left.join("\n  ")
            );
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The measurement plan of a full or quick run.
fn plan(quick: bool) -> Plan {
    if quick {
        Plan {
            rounds: 1,
            syscall_iterations: 10_000,
            fileio_mib: 32,
            tcp_seconds: 1.0,
        }
    } else {
        Plan {
            rounds: 5,
            syscall_iterations: 50_000,
            fileio_mib: 256,
            tcp_seconds: 4.0,
        }
    }
}

/// Container counts at which memory is read.
fn checkpoints(quick: bool) -> Vec<usize> {
    if quick {
        vec![1, 5, 10]
    } else {
        vec![1, 10, 20, 30, 40, 50]
    }
}

/// MiB in `kib`.
fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// Adds the memory metrics of `m` to `col`: per-container host memory and
/// the density slopes.
fn memory_metrics(col: &mut Collector, m: &memory::MemoryResult) {
    let key = |name| Key {
        group: "memory",
        name,
        unit: "MiB",
        higher_is_better: false,
    };
    col.extend(
        key("Rss per container"),
        m.containers.iter().map(|c| mib(c.rss_kib as f64)),
    );
    col.extend(
        key("Pss per container"),
        m.containers.iter().map(|c| mib(c.pss_kib as f64)),
    );
    col.extend(
        key("Anonymous per container"),
        m.containers.iter().map(|c| mib(c.anon_kib as f64)),
    );
    col.extend(
        Key {
            unit: "processes",
            ..key("host processes per container")
        },
        m.containers.iter().map(|c| c.processes.len() as f64),
    );
    for (name, _, f) in memory::DENSITY_MEASURES {
        let pts: Vec<(f64, f64)> = m
            .density
            .iter()
            .map(|p| (p.containers as f64, mib(f(p))))
            .collect();
        if let Some(s) = memory::slope(&pts) {
            col.push(
                Key {
                    group: "density",
                    name,
                    unit: "MiB",
                    higher_is_better: false,
                },
                s,
            );
        }
    }
}

fn run(args: Args) -> Result<()> {
    let runs = args.runs.unwrap_or(pick((30, 3), args.quick));
    let rounds = pick((3, 1), args.quick);
    let warmup = pick(WARMUP, args.quick);
    let parallel_containers = pick(PARALLEL, args.quick);
    let plan = plan(args.quick);
    let checkpoints = checkpoints(args.quick);
    let classes = args
        .classes
        .unwrap_or_else(|| SHIM_CLASSES.iter().map(|c| c.to_string()).collect());

    let shim = args.shim.unwrap_or_else(default_shim);
    ensure!(
        shim.is_file(),
        "the Strata shim {} does not exist; build it with \
         `cargo build --release -p strata-shim` (or pass --shim PATH)",
        shim.display()
    );
    let strata_exe =
        fs::canonicalize(&shim).with_context(|| format!("resolving {}", shim.display()))?;
    let runc_exe = find_in_path(RUNC_SHIM_NAME)?;
    let (stamp, date) = now()?;
    let out = args
        .out
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results"))
        .join(&stamp);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let config = Config {
        quick: args.quick,
        classes: classes.clone(),
        runs,
        warmup,
        parallel_containers,
        parallel_rounds: rounds,
        workload_rounds: plan.rounds,
        syscall_iterations: plan.syscall_iterations,
        fileio_mib: plan.fileio_mib,
        tcp_seconds: plan.tcp_seconds,
        density_checkpoints: checkpoints.clone(),
        strata_shim: strata_exe.display().to_string(),
        runc_shim: runc_exe.display().to_string(),
        revision: revision(),
    };

    eprintln!("starting a private containerd with {}", shim.display());
    let c = Containerd::start_with(ContainerdOptions {
        shim: Some(shim.clone()),
        require_shim: true,
        ..ContainerdOptions::new(RUNC)
    })?;
    let before = c.snapshot();
    let (runtimes, skipped) = runtimes::select(&c, &classes)?;
    let mut cols: Vec<Collector> = runtimes.iter().map(|_| Collector::default()).collect();
    let mut failures = Vec::new();

    let start = latency::serial(&c, &runtimes, warmup, runs, &mut failures);
    let parallel = latency::parallel(&c, &runtimes, parallel_containers, rounds, &mut failures);
    let burst = format!("{parallel_containers} at once");
    for ((col, s), p) in cols.iter_mut().zip(start).zip(parallel) {
        let key = Key {
            group: "start",
            name: "serial, to first output",
            unit: "ms",
            higher_is_better: false,
        };
        col.extend(key, s.first_output);
        col.extend(
            Key {
                name: "serial, to exit",
                ..key
            },
            s.exit,
        );
        col.extend(
            Key {
                name: &burst,
                ..key
            },
            p,
        );
    }
    let isolation = workload::measure(&c, &runtimes, &mut cols, &plan, &mut failures)?;
    let mut memories = vec![memory::MemoryResult::default(); runtimes.len()];
    rounds::interleaved(&runtimes, 1, "memory", &mut failures, |i, rt, _| {
        memories[i] = memory::measure(&c, rt, &checkpoints)?;
        Ok(())
    });
    for (col, m) in cols.iter_mut().zip(&memories) {
        memory_metrics(col, m);
    }
    warn_leftovers(&c, &before);
    drop(c);

    let mut results: Vec<RuntimeResults> = runtimes
        .iter()
        .zip(cols)
        .zip(memories)
        .zip(isolation)
        .map(|(((rt, col), memory), isolation)| RuntimeResults {
            label: rt.label.clone(),
            runtime: rt.name.clone(),
            metrics: col.finish(),
            memory,
            isolation,
        })
        .collect();
    if let Some((runc, others)) = results.split_first_mut() {
        for o in others {
            metrics::set_ratios(&runc.metrics, &mut o.metrics);
        }
    }
    let charts = charts::write_all(&results, &out)?;
    let results = Results {
        date,
        host: Host::collect(),
        config,
        skipped,
        failures,
        runtimes: results,
        charts,
    };
    let md = report::write(&results, &out)?;
    println!("{md}");
    eprintln!(
        "wrote {}/report.md, results.json and {} chart(s)",
        out.display(),
        results.charts.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn arguments() {
        assert_eq!(parse(&[]).unwrap(), Args::default());
        let a = parse(&[
            "--quick",
            "--out",
            "/tmp/o",
            "--runs",
            "7",
            "--shim",
            "/s",
            "--classes",
            "native,microvm",
        ])
        .unwrap();
        assert!(a.quick);
        assert_eq!(
            a.classes,
            Some(vec!["native".to_owned(), "microvm".to_owned()])
        );
        assert_eq!(a.out, Some(PathBuf::from("/tmp/o")));
        assert_eq!(a.runs, Some(7));
        assert_eq!(a.shim, Some(PathBuf::from("/s")));
        assert!(parse(&["--runs", "x"]).is_err());
        assert!(parse(&["--runs", "0"]).is_err());
        assert!(parse(&["--out"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--classes", "nope"]).is_err());
    }
}
