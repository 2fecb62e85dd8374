//! The results of a run: the host they were measured on, the raw numbers,
//! their summaries, and the Markdown report and JSON file they are written
//! to.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::groups::{Group, GROUPS};
use crate::isolation::Check;
use crate::memory::MemoryResult;
use crate::metrics::{self, Metric};
use crate::rounds::Failure;
use crate::runtimes::Skipped;

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
    /// Quick mode (fewer and smaller runs).
    pub quick: bool,
    /// Strata classes asked for with `--classes`.
    pub classes: Vec<String>,
    /// Timed serial start runs per runtime.
    pub runs: usize,
    /// Untimed warm-up runs per runtime before them.
    pub warmup: usize,
    /// Containers per parallel burst.
    pub parallel_containers: usize,
    /// Parallel bursts per runtime.
    pub parallel_rounds: usize,
    /// Probe containers per runtime (each runs every in-container
    /// measurement).
    pub workload_rounds: usize,
    /// Iterations of the cheap system calls per probe run.
    pub syscall_iterations: u64,
    /// MiB written and read per file measurement.
    pub fileio_mib: u64,
    /// Seconds per TCP probe run.
    pub tcp_seconds: f64,
    /// Container counts at which memory is read.
    pub density_checkpoints: Vec<usize>,
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
    /// Short name (`runc`, or the Strata class).
    pub label: String,
    /// containerd runtime name.
    pub runtime: String,
    /// Every metric, grouped as in [`GROUPS`].
    pub metrics: Vec<Metric>,
    /// Per-container memory and the density curve.
    pub memory: MemoryResult,
    /// The isolation checks.
    pub isolation: Vec<Check>,
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
    /// Classes that were asked for but could not run here.
    pub skipped: Vec<Skipped>,
    /// Measurements that failed on a runtime that otherwise ran.
    pub failures: Vec<Failure>,
    /// runc first, then the Strata classes that ran.
    pub runtimes: Vec<RuntimeResults>,
    /// The chart files written next to the report.
    pub charts: Vec<String>,
}

/// A number with as many decimals as its size deserves.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// What a group's numbers are and how they were taken.
fn description(g: &Group, c: &Config) -> String {
    match g.id {
        "start" => format!(
            "Wall time of `ctr run --rm --runtime RUNTIME IMAGE ID ...`: `serial` \
             is one `echo up` container at a time, to its first output and to \
             `ctr`'s exit ({} runs per runtime after {} warm-up runs, \
             interleaved); `{} at once` is the time until all of {} concurrent \
             `true` containers have exited ({} round(s) per runtime).",
            c.runs, c.warmup, c.parallel_containers, c.parallel_containers, c.parallel_rounds
        ),
        "syscalls" => format!(
            "`strata-probe syscalls --iterations {}` in each of {} probe \
             container(s) per runtime: nanoseconds per operation (getppid as a raw syscall; \
             openat+close and stat of a file of the image; pread/pwrite of 4 KiB \
             on a file in /tmp; anonymous mmap of 4 KiB, touched and unmapped; a \
             one-byte pipe round trip to a child process; fork, exec of \
             /bin/true and wait).",
            c.syscall_iterations, c.workload_rounds
        ),
        "fileio" => format!(
            "`strata-probe fileio --size {}`: sequential 1 MiB writes with a final \
             fsync, then reads after dropping the file's cached pages where the \
             file system allows, in /tmp of the container's root file system \
             (overlay) and on a tmpfs mounted into the container; {} probe \
             container(s) per runtime.",
            c.fileio_mib, c.workload_rounds
        ),
        "tcp" => format!(
            "`strata-probe tcp --seconds {}`: client and server in the container \
             over its loopback, half the time bulk transfer in 128 KiB writes, half \
             64-byte requests each answered before the next; {} probe \
             container(s) per runtime.",
            c.tcp_seconds, c.workload_rounds
        ),
        "memory" => format!(
            "{} idle `sleep` containers per runtime. Per container, the \
             processes the runtime runs on the host for it outside the container's \
             cgroup (the shim, and a VMM or supervisor where the class has one): \
             `Rss`, `Pss` and `Anonymous` from `/proc/PID/smaps_rollup`, in MiB; \
             the spread is over the containers. `Pss` splits shared pages (such as \
             the shim's code) among the processes mapping them.",
            c.density_checkpoints.iter().max().copied().unwrap_or(0)
        ),
        "density" => format!(
            "Idle containers started up to five at a time; at {:?} containers, the growth \
             of the host's used memory (`MemTotal - MemAvailable`) since before the \
             first one, and the memory attributable to the containers (their host \
             processes' `Pss` plus their cgroups' memory). The rows are the \
             least-squares slopes in MiB per container; the curve is in the \
             chart. Host growth includes kernel memory but also whatever else the \
             machine did meanwhile.",
            c.density_checkpoints
        ),
        _ => String::new(),
    }
}

/// The table of one group: a row per metric, a column per runtime
/// (median and p10–p90) and one per Strata class relative to runc.
fn group_table(s: &mut String, g: &Group, r: &Results) {
    let Some(base) = r.runtimes.first() else {
        return;
    };
    let names = metrics::of_group(r.runtimes.iter().map(|rt| rt.metrics.as_slice()), g.id);
    let others = &r.runtimes[1..];
    let mut head = "| metric | unit |".to_owned();
    let mut rule = "| --- | --- |".to_owned();
    for rt in &r.runtimes {
        let _ = write!(head, " {} median (p10–p90) |", rt.label);
        rule.push_str(" --: |");
    }
    for rt in others {
        let _ = write!(head, " {}/{} |", rt.label, base.label);
        rule.push_str(" --: |");
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for m in names {
        let _ = write!(s, "| {} | {} |", m.name, m.unit);
        let find = |rt: &RuntimeResults| {
            rt.metrics
                .iter()
                .find(|x| x.group == m.group && x.name == m.name)
                .cloned()
        };
        for rt in &r.runtimes {
            match find(rt) {
                Some(x) if x.summary.n > 1 => {
                    let t = &x.summary;
                    let _ = write!(s, " {} ({}–{}) |", num(t.median), num(t.p10), num(t.p90));
                }
                Some(x) => {
                    let _ = write!(s, " {} |", num(x.summary.median));
                }
                None => s.push_str(" – |"),
            }
        }
        for rt in others {
            match find(rt).and_then(|x| x.ratio_to_runc) {
                Some(q) => {
                    let _ = write!(s, " **{q:.2}** |");
                }
                None => s.push_str(" – |"),
            }
        }
        s.push('\n');
    }
    s.push('\n');
}

/// The isolation matrix: a row per check, a column per runtime.
fn isolation_table(s: &mut String, r: &Results) {
    let mut probes: Vec<&str> = Vec::new();
    for c in r.runtimes.iter().flat_map(|rt| &rt.isolation) {
        if !probes.contains(&c.probe.as_str()) {
            probes.push(&c.probe);
        }
    }
    let _ = writeln!(s, "## Isolation\n");
    let _ = writeln!(
        s,
        "`strata-probe isolation` run by the container's shell, so PID 1 is \
         another process. A system call counts as blocked when it fails with \
         EPERM, EACCES or ENOSYS, as allowed when it succeeds or fails only on \
         its arguments. `hidden_path` looks for this containerd's config file \
         on the host; `denied_connect` connects to a listener on the host's \
         loopback; `host_processes` is allowed when kernel threads are \
         visible.\n"
    );
    let mut head = "| check |".to_owned();
    let mut rule = "| --- |".to_owned();
    for rt in &r.runtimes {
        let _ = write!(head, " {} |", rt.label);
        rule.push_str(" --- |");
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for probe in probes {
        let _ = write!(s, "| {probe} |");
        for rt in &r.runtimes {
            let cell = rt
                .isolation
                .iter()
                .find(|c| c.probe == probe)
                .map(|c| match (c.result.as_str(), &c.errno) {
                    ("info" | "skipped", _) => format!("{}: {}", c.result, c.detail),
                    (res, Some(e)) => format!("{res} ({e})"),
                    (res, None) => res.to_owned(),
                })
                .unwrap_or_else(|| "–".to_owned());
            let _ = write!(s, " {} |", cell.replace('|', "/"));
        }
        s.push('\n');
    }
    s.push('\n');
}

/// Renders the Markdown report.
pub fn markdown(r: &Results) -> String {
    let c = &r.config;
    let h = &r.host;
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "# Strata next to runc: isolation classes measured\n");
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
        "Every runtime ran in the same run against one private containerd with \
         the busybox test image (which carries `/usr/bin/strata-probe`), each \
         Strata class through its class-named shim \
         (`io.containerd.strata-<class>.v2`). Measurements alternate between \
         the runtimes so that drift of the machine affects all alike. Ratios \
         are medians relative to runc's: below 1 is less time or memory, above \
         1 more throughput where higher is better.\n"
    );
    let _ = writeln!(s, "## Classes\n");
    let _ = writeln!(s, "| class | runtime | status |\n| --- | --- | --- |");
    for rt in &r.runtimes {
        let _ = writeln!(s, "| {} | `{}` | measured |", rt.label, rt.runtime);
    }
    for k in &r.skipped {
        let _ = writeln!(
            s,
            "| {} | `{}` | skipped: {} |",
            k.label,
            k.runtime,
            k.reason.replace('|', "/")
        );
    }
    s.push('\n');
    if !r.failures.is_empty() {
        let _ = writeln!(s, "## Failed measurements\n");
        let _ = writeln!(s, "| runtime | measurement | error |\n| --- | --- | --- |");
        for f in &r.failures {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                f.label,
                f.measurement,
                f.error.replace('|', "/").replace('\n', " ")
            );
        }
        s.push('\n');
    }
    for g in &GROUPS {
        let _ = writeln!(s, "## {}\n", g.title);
        let _ = writeln!(s, "{}\n", description(g, c));
        group_table(&mut s, g, r);
        if g.id == "density" {
            for rt in &r.runtimes {
                if let Some(why) = &rt.memory.stopped_early {
                    let _ = writeln!(s, "{}: {why}.\n", rt.label);
                }
            }
        }
        if r.charts.iter().any(|f| f == &format!("{}.svg", g.id)) {
            let _ = writeln!(s, "![{}]({}.svg)\n", g.title, g.id);
        }
    }
    isolation_table(&mut s, r);
    if r.charts.iter().any(|f| f == "isolation.svg") {
        let _ = writeln!(s, "![Isolation](isolation.svg)\n");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(num(1234.56), "1235");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(0.1234), "0.12");
    }
}
