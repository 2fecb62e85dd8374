//! The results of a run: the host they were measured on, the raw numbers,
//! their summaries, and the Markdown report and JSON file they are written
//! to.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::memory::MemoryResult;
use crate::stats::Summary;

/// The machine and software the numbers were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Logical CPUs listed in `/proc/cpuinfo`.
    pub cores: usize,
    /// `containerd --version`, without the program name and module path.
    pub containerd: String,
    /// Version from the first line of `runc --version`.
    pub runc: String,
}

/// First line of `program args` output, or `unknown`.
fn first_line_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Host {
    /// Describes this machine.
    pub fn collect() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                matches!(k.trim(), "model name" | "Hardware" | "cpu model" | "cpu")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let cores = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
            .count();
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let containerd = first_line_of("containerd", &["--version"]);
        // "containerd github.com/containerd/containerd 1.6.20~ds1 <revision>"
        let containerd = containerd
            .split_whitespace()
            .nth(2)
            .map(str::to_owned)
            .unwrap_or(containerd);
        Self {
            kernel,
            cpu_model,
            cores,
            containerd,
            runc: first_line_of("runc", &["--version"])
                .trim_start_matches("runc version ")
                .to_owned(),
        }
    }
}

/// How the run was set up.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Quick mode (fewer runs).
    pub quick: bool,
    /// Timed serial runs per runtime.
    pub runs: usize,
    /// Untimed warm-up runs per runtime before them.
    pub warmup: usize,
    /// Containers per parallel burst.
    pub parallel_containers: usize,
    /// Parallel bursts per runtime.
    pub parallel_rounds: usize,
    /// Idle containers per runtime for the memory measurement.
    pub memory_containers: usize,
    /// The Strata shim binary.
    pub strata_shim: String,
    /// The runc shim binary.
    pub runc_shim: String,
    /// `git describe --always --dirty` of the source tree.
    pub revision: String,
}

/// Everything measured for one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeResults {
    /// Short name (`runc`, `strata`).
    pub label: String,
    /// containerd runtime name.
    pub runtime: String,
    /// Serial start latencies in ms, in the order measured.
    pub start_ms: Vec<f64>,
    /// Summary of `start_ms`.
    pub start: Summary,
    /// Parallel burst times in ms, in the order measured.
    pub parallel_ms: Vec<f64>,
    /// Summary of `parallel_ms`.
    pub parallel: Summary,
    /// Shim memory.
    pub memory: MemoryResult,
}

/// Strata's numbers divided by runc's.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratios {
    /// Median serial start latency.
    pub start_median: f64,
    /// Median parallel burst time.
    pub parallel_median: f64,
    /// Shim `Rss` per container.
    pub rss: f64,
    /// Shim `Pss` per container.
    pub pss: f64,
    /// Shim `Anonymous` per container.
    pub anon: f64,
}

impl Ratios {
    /// `strata / runc` for each headline number.
    pub fn of(strata: &RuntimeResults, runc: &RuntimeResults) -> Self {
        let (s, r) = (&strata.memory.per_container, &runc.memory.per_container);
        Self {
            start_median: strata.start.median / runc.start.median,
            parallel_median: strata.parallel.median / runc.parallel.median,
            rss: s.rss_kib / r.rss_kib,
            pss: s.pss_kib / r.pss_kib,
            anon: s.anon_kib / r.anon_kib,
        }
    }
}

/// The complete results of one run, as written to `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// When the run started (local time, ISO 8601).
    pub date: String,
    /// Where it ran.
    pub host: Host,
    /// How it was set up.
    pub config: Config,
    /// runc first, then Strata.
    pub runtimes: Vec<RuntimeResults>,
    /// Strata relative to runc.
    pub ratios: Ratios,
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// Renders the Markdown report.
pub fn markdown(r: &Results) -> String {
    let c = &r.config;
    let h = &r.host;
    let mut s = String::new();
    let name = |rt: &RuntimeResults| format!("{} (`{}`)", rt.label, rt.runtime);
    // Writing to a String cannot fail.
    let _ = writeln!(s, "# Strata and runc: start latency and shim memory\n");
    let _ = writeln!(s, "- Date: {}", r.date);
    let _ = writeln!(s, "- Kernel: {} (`uname -r`)", h.kernel);
    let _ = writeln!(s, "- CPU: {}, {} cores", h.cpu_model, h.cores);
    let _ = writeln!(s, "- containerd: {}; runc: {}", h.containerd, h.runc);
    let _ = writeln!(
        s,
        "- Strata shim: `{}` (source {})",
        c.strata_shim, c.revision
    );
    let _ = writeln!(s, "- runc shim: `{}`", c.runc_shim);
    let _ = writeln!(s, "- Mode: {}\n", if c.quick { "quick" } else { "full" });
    let _ = writeln!(
        s,
        "Both runtimes ran in the same run against one private containerd with \
         the busybox test image; Strata ran its `native` class. Measurements \
         alternate between the runtimes so that drift of the machine affects \
         both alike.\n"
    );

    let _ = writeln!(s, "## Start latency\n");
    let _ = writeln!(
        s,
        "Wall time of `ctr run --rm --runtime RUNTIME IMAGE ID true`, one \
         container at a time: {} runs per runtime, interleaved, after {} \
         warm-up runs each.\n",
        c.runs, c.warmup
    );
    let _ = writeln!(
        s,
        "| runtime | runs | median (ms) | p10 (ms) | p90 (ms) | min (ms) | max (ms) |"
    );
    let _ = writeln!(s, "| --- | --: | --: | --: | --: | --: | --: |");
    for rt in &r.runtimes {
        let t = &rt.start;
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            name(rt),
            t.n,
            t.median,
            t.p10,
            t.p90,
            t.min,
            t.max
        );
    }
    let _ = writeln!(
        s,
        "\nstrata/runc, medians: **{:.2}**\n",
        r.ratios.start_median
    );

    let _ = writeln!(s, "## Parallel start\n");
    let _ = writeln!(
        s,
        "{} containers started at once (concurrent `ctr run --rm … true`), \
         time until all have exited: {} round(s) per runtime, interleaved.\n",
        c.parallel_containers, c.parallel_rounds
    );
    let _ = writeln!(
        s,
        "| runtime | rounds | median (ms) | min (ms) | max (ms) |"
    );
    let _ = writeln!(s, "| --- | --: | --: | --: | --: |");
    for rt in &r.runtimes {
        let t = &rt.parallel;
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            name(rt),
            t.n,
            t.median,
            t.min,
            t.max
        );
    }
    let _ = writeln!(
        s,
        "\nstrata/runc, medians: **{:.2}**\n",
        r.ratios.parallel_median
    );

    let _ = writeln!(s, "## Shim memory\n");
    let _ = writeln!(
        s,
        "{} idle `sleep 1000` containers per runtime. For each shim server \
         process, `Rss`, `Pss` and `Anonymous` from `/proc/PID/smaps_rollup`, \
         summed over the runtime's shims and divided by the number of \
         containers. `Pss` splits shared pages (such as the shim's code) among \
         the processes mapping them.\n",
        c.memory_containers
    );
    let _ = writeln!(
        s,
        "| runtime | containers | shim processes | Rss/container (MiB) | Pss/container (MiB) | Anonymous/container (MiB) |"
    );
    let _ = writeln!(s, "| --- | --: | --: | --: | --: | --: |");
    for rt in &r.runtimes {
        let m = &rt.memory;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} |",
            name(rt),
            m.containers,
            m.shims.len(),
            mib(m.per_container.rss_kib),
            mib(m.per_container.pss_kib),
            mib(m.per_container.anon_kib)
        );
    }
    let _ = writeln!(
        s,
        "\nstrata/runc: Rss **{:.2}**, Pss **{:.2}**, Anonymous **{:.2}**",
        r.ratios.rss, r.ratios.pss, r.ratios.anon
    );
    s
}

/// Writes `report.md` and `results.json` into `dir` and returns the report.
pub fn write(r: &Results, dir: &Path) -> Result<String> {
    let md = markdown(r);
    let report = dir.join("report.md");
    fs::write(&report, &md).with_context(|| format!("writing {}", report.display()))?;
    let json = dir.join("results.json");
    let mut text = serde_json::to_string_pretty(r).context("encoding the results")?;
    text.push('\n');
    fs::write(&json, text).with_context(|| format!("writing {}", json.display()))?;
    Ok(md)
}
