//! Memory per container and density.
//!
//! Idle `sleep` containers are started, a few at a time, up to the
//! largest checkpoint. At each checkpoint (after a short settle) two things are
//! read:
//!
//! * the host's used memory (`MemTotal - MemAvailable` of
//!   `/proc/meminfo`), as growth over what was used before the first
//!   container: everything the containers cost, kernel memory included, but
//!   also whatever else the machine did meanwhile;
//! * per container, the processes the runtime runs on the host for it
//!   outside the container's cgroup: the shim server (a `containerd-shim*`
//!   process with this containerd's namespace and the container's ID on its
//!   command line, not a `start` or `delete` invocation) and its
//!   descendants, and any other process whose command line names the
//!   container's bundle (`…/<namespace>/<id>`) with its descendants, in
//!   each case only those not in the container's cgroup (so a VMM or a
//!   supervisor counts, even one that left the shim's process tree, and
//!   the container's own processes do not). Their `Rss`,
//!   `Pss` and `Anonymous` come from `/proc/PID/smaps_rollup`; with the
//!   memory charged to the container's cgroup they make up the memory
//!   attributable to the container.
//!
//! The per-container numbers of the last checkpoint are the overhead
//! metrics; the checkpoints are the density curve.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use serde::Serialize;
use strata_e2e::procfs::{self, ProcInfo};
use strata_e2e::{Containerd, RunOptions};

use crate::runtimes::Runtime;
use crate::stats;

/// The share of the host's memory that must stay available: the density
/// measurement stops at the last checkpoint before it would fall below.
pub const MIN_AVAILABLE_SHARE: f64 = 0.25;

/// Idle containers started at once between checkpoints.
pub const START_CONCURRENCY: usize = 5;

/// How long the containers idle before a checkpoint is read.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Memory of one host process, in KiB, from `smaps_rollup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessMemory {
    /// Process ID.
    pub pid: i32,
    /// Resident set size (`Rss`).
    pub rss_kib: u64,
    /// Proportional set size (`Pss`): shared pages divided among sharers.
    pub pss_kib: u64,
    /// Resident anonymous memory (`Anonymous`).
    pub anon_kib: u64,
}

/// What one container costs on the host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerMemory {
    /// Container ID.
    pub id: String,
    /// The runtime's host processes for it (see the module docs).
    pub processes: Vec<ProcessMemory>,
    /// Sum of their `Rss`.
    pub rss_kib: u64,
    /// Sum of their `Pss`.
    pub pss_kib: u64,
    /// Sum of their `Anonymous`.
    pub anon_kib: u64,
    /// Memory charged to the container's cgroup, if it could be read.
    pub cgroup_kib: Option<u64>,
}

/// One point of the density curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DensityPoint {
    /// Idle containers running.
    pub containers: usize,
    /// Growth of the host's used memory since before the first container.
    pub host_growth_kib: f64,
    /// Sum over the containers of their host processes' `Pss` and their
    /// cgroups' memory.
    pub attributable_kib: f64,
}

/// Reads one measure off a density point, in KiB.
pub type DensityMeasure = fn(&DensityPoint) -> f64;

/// The two measures of the density curve: metric name, chart title, and
/// how to read it.
pub const DENSITY_MEASURES: [(&str, &str, DensityMeasure); 2] = [
    (
        "host growth per container",
        "Host memory growth (MiB)",
        |p| p.host_growth_kib,
    ),
    (
        "attributable per container",
        "Attributable memory (MiB)",
        |p| p.attributable_kib,
    ),
];

/// Memory of one runtime (empty where it could not be measured).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemoryResult {
    /// Host memory used before the first container, KiB.
    pub baseline_used_kib: f64,
    /// Every container at the last checkpoint.
    pub containers: Vec<ContainerMemory>,
    /// The density curve.
    pub density: Vec<DensityPoint>,
    /// Why the curve ends before the last checkpoint, if it does.
    pub stopped_early: Option<String>,
}

/// Parses `Rss`, `Pss` and `Anonymous` (KiB) out of `smaps_rollup` text.
pub fn parse_rollup(text: &str) -> Result<(u64, u64, u64)> {
    let field = |name: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                rest.trim().strip_suffix("kB")?.trim().parse().ok()
            })
            .with_context(|| format!("no `{name}:` line in smaps_rollup"))
    };
    Ok((field("Rss")?, field("Pss")?, field("Anonymous")?))
}

/// Reads the memory of process `pid`.
pub fn read_rollup(pid: i32) -> Result<ProcessMemory> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (rss_kib, pss_kib, anon_kib) = parse_rollup(&text).with_context(|| path.clone())?;
    Ok(ProcessMemory {
        pid,
        rss_kib,
        pss_kib,
        anon_kib,
    })
}

/// A field of `/proc/meminfo` text, in KiB.
fn meminfo_field(meminfo: &str, name: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        l.strip_prefix(name)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse::<u64>()
            .ok()
    })
}

/// `MemTotal - MemAvailable` in KiB from `/proc/meminfo` text.
pub fn parse_used(meminfo: &str) -> Option<u64> {
    meminfo_field(meminfo, "MemTotal")?.checked_sub(meminfo_field(meminfo, "MemAvailable")?)
}

/// Why no more containers should start: the host's available memory
/// (`MemAvailable`) is below [`MIN_AVAILABLE_SHARE`] of its total.
pub fn memory_exhausted(meminfo: &str) -> Option<String> {
    let total = meminfo_field(meminfo, "MemTotal")?;
    let available = meminfo_field(meminfo, "MemAvailable")?;
    ((available as f64) < total as f64 * MIN_AVAILABLE_SHARE).then(|| {
        format!(
            "the host had {} of {} MiB available, less than {:.0}%",
            available / 1024,
            total / 1024,
            MIN_AVAILABLE_SHARE * 100.0
        )
    })
}

/// The host's used memory now: the median of a few readings.
fn host_used_kib() -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..5 {
        let text = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        v.push(parse_used(&text).context("no MemTotal/MemAvailable in /proc/meminfo")? as f64);
        thread::sleep(Duration::from_millis(50));
    }
    v.sort_by(f64::total_cmp);
    stats::percentile(&v, 50.0).context("no readings")
}

/// The argument after `flag` in `cmdline`.
fn flag_value<'a>(cmdline: &'a [String], flag: &str) -> Option<&'a str> {
    let i = cmdline.iter().position(|a| a == flag)?;
    cmdline.get(i + 1).map(String::as_str)
}

/// True if `p` is the shim server of container `id` in `namespace`.
pub fn is_shim_server(p: &ProcInfo, namespace: &str, id: &str) -> bool {
    !p.is_zombie()
        && p.cmdline.first().is_some_and(|a| {
            Path::new(a)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("containerd-shim"))
        })
        && flag_value(&p.cmdline, "-namespace") == Some(namespace)
        && flag_value(&p.cmdline, "-id") == Some(id)
        && !matches!(
            p.cmdline.last().map(String::as_str),
            Some("start" | "delete")
        )
}

/// The memory cgroup of process `pid` as the text of `/proc/PID/cgroup`.
fn cgroup_of(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()
}

/// Memory charged to the cgroup described by `/proc/PID/cgroup` text, KiB:
/// the v1 memory controller's usage, else a v2 `memory.current`; `None`
/// for the root cgroup.
pub fn cgroup_memory_kib(cgroup: &str) -> Option<u64> {
    let read = |p: String| {
        fs::read_to_string(p)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
            .map(|b| b / 1024)
    };
    for line in cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            // The root cgroup holds the whole host, not one container.
            return (path != "/")
                .then(|| read(format!("/sys/fs/cgroup/memory{path}/memory.usage_in_bytes")))
                .flatten();
        }
    }
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .filter(|p| *p != "/")?;
    read(format!("/sys/fs/cgroup{path}/memory.current"))
        .or_else(|| read(format!("/sys/fs/cgroup/unified{path}/memory.current")))
}

/// True if command-line argument `arg` names the path `bundle`
/// (`/<namespace>/<id>`) or something below it.
fn names_bundle(arg: &str, bundle: &str) -> bool {
    arg.match_indices(bundle)
        .any(|(i, _)| matches!(arg[i + bundle.len()..].chars().next(), None | Some('/')))
}

/// Measures container `id`, whose task's host PID is `task_pid`.
fn container_memory(
    table: &BTreeMap<i32, ProcInfo>,
    namespace: &str,
    id: &str,
    task_pid: Option<i32>,
) -> Result<ContainerMemory> {
    let mut shims: Vec<&ProcInfo> = table
        .values()
        .filter(|p| is_shim_server(p, namespace, id))
        .collect();
    shims.sort_by_key(|p| p.start);
    let shim = shims
        .first()
        .with_context(|| format!("no shim server process for container {id}"))?;
    // The container's own cgroup, unless its task is a host process that
    // shares the shim's (a VMM, say), which is then no container cgroup.
    let shim_cgroup = cgroup_of(shim.pid);
    let cgroup = task_pid
        .and_then(cgroup_of)
        .filter(|cg| Some(cg) != shim_cgroup.as_ref());
    let bundle = format!("/{namespace}/{id}");
    let mut roots: BTreeSet<i32> = table
        .values()
        .filter(|p| !p.is_zombie() && p.cmdline.iter().any(|a| names_bundle(a, &bundle)))
        .map(|p| p.pid)
        .collect();
    roots.insert(shim.pid);
    let host_pids: Vec<i32> = procfs::with_descendants(table, &roots)
        .into_iter()
        .filter(|&p| cgroup.is_none() || cgroup_of(p) != cgroup)
        .collect();
    let processes = host_pids
        .into_iter()
        .map(read_rollup)
        .collect::<Result<Vec<_>>>()?;
    let sum = |f: fn(&ProcessMemory) -> u64| processes.iter().map(f).sum();
    Ok(ContainerMemory {
        id: id.to_owned(),
        rss_kib: sum(|p| p.rss_kib),
        pss_kib: sum(|p| p.pss_kib),
        anon_kib: sum(|p| p.anon_kib),
        cgroup_kib: cgroup.as_deref().and_then(cgroup_memory_kib),
        processes,
    })
}

/// Measures every container of `ids`.
fn measure_all(c: &Containerd, ids: &[String]) -> Result<Vec<ContainerMemory>> {
    let tasks: BTreeMap<String, i32> = c
        .tasks()?
        .into_iter()
        .map(|t| (t.id, t.pid as i32))
        .collect();
    let table = procfs::processes();
    ids.iter()
        .map(|id| {
            let pid = tasks.get(id).copied().filter(|&p| p > 0);
            container_memory(&table, c.namespace(), id, pid)
        })
        .collect()
}

/// Starts idle containers on `rt` up to the largest of `checkpoints`,
/// reads memory at each, and removes the containers again (also when
/// measuring failed).
pub fn measure(c: &Containerd, rt: &Runtime, checkpoints: &[usize]) -> Result<MemoryResult> {
    let max = checkpoints.iter().copied().max().unwrap_or(0);
    ensure!(max > 0, "no containers to measure");
    let ids: Vec<String> = (0..max).map(|i| format!("mem-{}-{i}", rt.label)).collect();
    let measured = start_and_measure(c, rt, &ids, checkpoints);
    let removal = remove_all(c, &ids);
    eprintln!("[memory] {}: removed the containers", rt.label);
    let result = measured?;
    removal?;
    Ok(result)
}

/// Removes whichever of `ids` exist, a few at a time.
fn remove_all(c: &Containerd, ids: &[String]) -> Result<()> {
    let existing = c.containers()?;
    let todo: Vec<&String> = ids.iter().filter(|id| existing.contains(id)).collect();
    let errors: Vec<String> = thread::scope(|s| {
        let workers: Vec<_> = todo
            .chunks(todo.len().div_ceil(4).max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|id| c.remove(id).err().map(|e| format!("{id}: {e:#}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec!["a removal thread panicked".into()])
            })
            .collect()
    });
    ensure!(
        errors.is_empty(),
        "removing containers: {}",
        errors.join("; ")
    );
    Ok(())
}

/// Starts idle containers `ids` on `rt`, up to [`START_CONCURRENCY`] at a
/// time, and waits until each runs.
fn start_batch(c: &Containerd, rt: &Runtime, ids: &[String]) -> Result<()> {
    for chunk in ids.chunks(START_CONCURRENCY) {
        thread::scope(|s| {
            let starts: Vec<_> = chunk
                .iter()
                .map(|id| {
                    s.spawn(move || -> Result<()> {
                        c.run_detached(
                            &RunOptions::new(id, ["sleep", "100000"]).runtime(&rt.name),
                        )?;
                        c.wait_status(id, "RUNNING", Duration::from_secs(60))?;
                        Ok(())
                    })
                })
                .collect();
            starts.into_iter().try_for_each(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(anyhow!("a start thread panicked")))
            })
        })?;
    }
    Ok(())
}

fn start_and_measure(
    c: &Containerd,
    rt: &Runtime,
    ids: &[String],
    checkpoints: &[usize],
) -> Result<MemoryResult> {
    thread::sleep(SETTLE);
    let baseline = host_used_kib()?;
    let mut density = Vec::new();
    let mut last = Vec::new();
    let mut checkpoints = checkpoints.to_vec();
    checkpoints.sort_unstable();
    checkpoints.dedup();
    let mut started = 0;
    let mut stopped_early = None;
    for &n in &checkpoints {
        let meminfo = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        if let Some(why) = memory_exhausted(&meminfo) {
            eprintln!(
                "[memory] {}: stopping at {started} containers: {why}",
                rt.label
            );
            stopped_early = Some(format!("stopped at {started} containers: {why}"));
            break;
        }
        start_batch(c, rt, &ids[started..n])?;
        started = n;
        thread::sleep(SETTLE);
        let used = host_used_kib()?;
        last = measure_all(c, &ids[..n])?;
        let attributable: u64 = last
            .iter()
            .map(|m| m.pss_kib + m.cgroup_kib.unwrap_or(0))
            .sum();
        let point = DensityPoint {
            containers: n,
            host_growth_kib: used - baseline,
            attributable_kib: attributable as f64,
        };
        eprintln!(
            "[memory] {} {n} containers: host +{:.1} MiB, attributable {:.1} MiB",
            rt.label,
            point.host_growth_kib / 1024.0,
            point.attributable_kib / 1024.0
        );
        density.push(point);
    }
    Ok(MemoryResult {
        baseline_used_kib: baseline,
        containers: last,
        density,
        stopped_early,
    })
}

/// Least-squares slope of `y` over `x`; `None` with fewer than two
/// distinct `x`.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn rollup_fields() {
        let text = "5629bacf5000-7ffefb53f000 ---p 00000000 00:00 0   [rollup]\n\
                    Rss:                1764 kB\n\
                    Pss:                 308 kB\n\
                    Pss_Anon:            116 kB\n\
                    Anonymous:           117 kB\n\
                    AnonHugePages:         0 kB\n";
        assert_eq!(parse_rollup(text).unwrap(), (1764, 308, 117));
        assert!(parse_rollup("Rss: 1 kB\n").is_err());
    }

    #[test]
    fn meminfo_used() {
        let t = "MemTotal:       24684000 kB\nMemFree:  1 kB\nMemAvailable:   24184000 kB\n";
        assert_eq!(parse_used(t), Some(500_000));
        assert_eq!(parse_used("MemTotal: 1 kB\n"), None);
        assert_eq!(memory_exhausted(t), None);
        let low = "MemTotal: 1000 kB\nMemAvailable: 100 kB\n";
        assert!(memory_exhausted(low).is_some());
    }

    #[test]
    fn bundle_names() {
        let b = "/ns1/c1";
        assert!(names_bundle("/run/x/ns1/c1", b));
        assert!(names_bundle("--socket=/run/x/ns1/c1/vm.sock", b));
        assert!(!names_bundle("/run/x/ns1/c10", b));
        assert!(!names_bundle("/run/x/ns1/c", b));
    }

    #[test]
    fn root_cgroup_is_not_a_container() {
        assert_eq!(cgroup_memory_kib("4:memory:/\n0::/\n"), None);
        assert_eq!(cgroup_memory_kib("0::/\n"), None);
    }

    #[test]
    fn least_squares() {
        assert_eq!(slope(&[(1.0, 3.0), (2.0, 5.0), (3.0, 7.0)]), Some(2.0));
        assert_eq!(slope(&[(1.0, 3.0)]), None);
    }

    fn proc(cmdline: &[&str]) -> ProcInfo {
        ProcInfo {
            pid: 10,
            ppid: 1,
            start: 1,
            state: 'S',
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
            exe: Some(PathBuf::from("/usr/bin/x")),
            environ: Vec::new(),
        }
    }

    #[test]
    fn shim_server_matching() {
        let server = [
            "/usr/bin/containerd-shim-runc-v2",
            "-namespace",
            "ns1",
            "-id",
            "c1",
            "-address",
            "/tmp/x/c.sock",
        ];
        assert!(is_shim_server(&proc(&server), "ns1", "c1"));
        assert!(!is_shim_server(&proc(&server), "ns1", "c10"));
        assert!(!is_shim_server(&proc(&server), "ns10", "c1"));
        let mut start = server.to_vec();
        start.push("start");
        assert!(!is_shim_server(&proc(&start), "ns1", "c1"));
        let mut other = server;
        other[0] = "/usr/bin/sleep";
        assert!(!is_shim_server(&proc(&other), "ns1", "c1"));
    }
}
