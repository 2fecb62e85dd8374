//! Start latency and shim memory of Strata's `native` class next to runc
//! (`io.containerd.runc.v2`), measured in the same run against one private
//! containerd (the end-to-end fixture of `strata-e2e`).
//!
//! ```text
//! cargo build --release -p strata-shim
//! cargo run --release -p benchmarks -- [--quick] [--out DIR] [--runs N] [--shim PATH]
//! ```
//!
//! Needs root, containerd, runc and busybox-static, like the end-to-end
//! tests. Progress goes to stderr; the Markdown report goes to stdout and,
//! with the raw numbers as JSON, to `DIR/report.md` and `DIR/results.json`
//! (by default `benchmarks/results/<YYYY-MM-DD-HHMMSS>/`).

mod latency;
mod memory;
mod report;
mod stats;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use strata_e2e::containerd::SHIM_NAME;
use strata_e2e::{Containerd, ContainerdOptions, HostSnapshot, RUNC};

use crate::report::{Config, Host, Ratios, Results, RuntimeResults};
use crate::stats::Summary;

/// The runtime name that selects Strata's `native` class.
const STRATA_NATIVE: &str = "io.containerd.strata-native.v2";

/// The runc shim's binary name.
const RUNC_SHIM_NAME: &str = "containerd-shim-runc-v2";

/// Untimed runs per runtime before the timed serial runs.
const WARMUP: usize = 2;

/// Containers per parallel burst.
const PARALLEL: usize = 20;

const USAGE: &str = "\
usage: benchmarks [--quick] [--out DIR] [--runs N] [--shim PATH]

  --quick       fewer runs: 5 serial, 1 parallel round, 3 idle containers
  --out DIR     where to write report.md and results.json
                (default: benchmarks/results/<YYYY-MM-DD-HHMMSS>/)
  --runs N      timed serial runs per runtime (default 30, quick 5)
  --shim PATH   the Strata shim binary
                (default: target/release/containerd-shim-strata-v2)";

/// A runtime under measurement.
pub struct Runtime {
    /// Short name for reports and container IDs.
    pub label: &'static str,
    /// containerd runtime name (`ctr run --runtime`).
    pub name: &'static str,
    /// Canonical path of its shim binary, to recognise its processes.
    pub shim_exe: PathBuf,
}

/// Command-line options.
#[derive(Debug, Default, PartialEq)]
struct Args {
    quick: bool,
    out: Option<PathBuf>,
    runs: Option<usize>,
    shim: Option<PathBuf>,
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

fn run(args: Args) -> Result<()> {
    let runs = args.runs.unwrap_or(if args.quick { 5 } else { 30 });
    let rounds = if args.quick { 1 } else { 3 };
    let idle = if args.quick { 3 } else { 10 };

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
    let out = args.out.unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results")
            .join(&stamp)
    });
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let host = Host::collect();
    let config = Config {
        quick: args.quick,
        runs,
        warmup: WARMUP,
        parallel_containers: PARALLEL,
        parallel_rounds: rounds,
        memory_containers: idle,
        strata_shim: strata_exe.display().to_string(),
        runc_shim: runc_exe.display().to_string(),
        revision: revision(),
    };
    let runtimes = [
        Runtime {
            label: "runc",
            name: RUNC,
            shim_exe: runc_exe,
        },
        Runtime {
            label: "strata",
            name: STRATA_NATIVE,
            shim_exe: strata_exe,
        },
    ];

    eprintln!("starting a private containerd with {}", shim.display());
    let c = Containerd::start_with(ContainerdOptions {
        shim: Some(shim.clone()),
        require_shim: true,
        ..ContainerdOptions::new(RUNC)
    })?;
    let before = c.snapshot();
    let start = latency::serial(&c, &runtimes, WARMUP, runs)?;
    let parallel = latency::parallel(&c, &runtimes, PARALLEL, rounds)?;
    let memory = runtimes
        .iter()
        .map(|rt| memory::measure(&c, rt, idle))
        .collect::<Result<Vec<_>>>()?;
    warn_leftovers(&c, &before);
    drop(c);

    let results: Vec<RuntimeResults> = runtimes
        .iter()
        .zip(start)
        .zip(parallel)
        .zip(memory)
        .map(|(((rt, start_ms), parallel_ms), memory)| {
            Ok(RuntimeResults {
                label: rt.label.to_owned(),
                runtime: rt.name.to_owned(),
                start: Summary::of(&start_ms).context("no start times")?,
                start_ms,
                parallel: Summary::of(&parallel_ms).context("no parallel times")?,
                parallel_ms,
                memory,
            })
        })
        .collect::<Result<_>>()?;
    let results = Results {
        date,
        host,
        config,
        ratios: Ratios::of(&results[1], &results[0]),
        runtimes: results,
    };
    let md = report::write(&results, &out)?;
    println!("{md}");
    eprintln!("wrote {}/report.md and results.json", out.display());
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
        let a = parse(&["--quick", "--out", "/tmp/o", "--runs", "7", "--shim", "/s"]).unwrap();
        assert!(a.quick);
        assert_eq!(a.out, Some(PathBuf::from("/tmp/o")));
        assert_eq!(a.runs, Some(7));
        assert_eq!(a.shim, Some(PathBuf::from("/s")));
        assert!(parse(&["--runs", "x"]).is_err());
        assert!(parse(&["--runs", "0"]).is_err());
        assert!(parse(&["--out"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
