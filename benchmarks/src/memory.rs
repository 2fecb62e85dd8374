//! Shim memory: idle containers are started, the shim server process of
//! each is found in `/proc`, and its `/proc/PID/smaps_rollup` is read.
//!
//! A shim server is a process whose executable is the runtime's shim binary
//! and whose command line carries this containerd's exact address and
//! namespace (`-address ADDR`, `-namespace NS`) and no `start`/`delete`
//! action, so neither other containerd instances' shims nor short-lived
//! `start`/`delete` invocations are counted.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use strata_e2e::procfs::{self, ProcInfo};
use strata_e2e::{Containerd, RunOptions};

use crate::Runtime;

/// How long the idle containers run before their shims are measured.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Memory of one shim server process, in KiB, from `smaps_rollup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShimMemory {
    /// Process ID.
    pub pid: i32,
    /// Resident set size (`Rss`).
    pub rss_kib: u64,
    /// Proportional set size (`Pss`): shared pages divided among sharers.
    pub pss_kib: u64,
    /// Resident anonymous memory (`Anonymous`).
    pub anon_kib: u64,
}

/// Per-container averages, in KiB: the shims' totals divided by the number
/// of containers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PerContainer {
    /// Average `Rss`.
    pub rss_kib: f64,
    /// Average `Pss`.
    pub pss_kib: f64,
    /// Average `Anonymous`.
    pub anon_kib: f64,
}

/// Shim memory of one runtime.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryResult {
    /// Idle containers that were running.
    pub containers: usize,
    /// Every shim server process found, with its memory.
    pub shims: Vec<ShimMemory>,
    /// Totals over `shims` divided by `containers`.
    pub per_container: PerContainer,
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
pub fn read_rollup(pid: i32) -> Result<ShimMemory> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (rss_kib, pss_kib, anon_kib) = parse_rollup(&text).with_context(|| path.clone())?;
    Ok(ShimMemory {
        pid,
        rss_kib,
        pss_kib,
        anon_kib,
    })
}

/// The argument after `flag` in `cmdline`.
fn flag_value<'a>(cmdline: &'a [String], flag: &str) -> Option<&'a str> {
    let i = cmdline.iter().position(|a| a == flag)?;
    cmdline.get(i + 1).map(String::as_str)
}

/// True if `p` is a shim server running `exe` for containerd `address` and
/// `namespace`; see the module docs.
pub fn is_shim_server(p: &ProcInfo, exe: &Path, address: &str, namespace: &str) -> bool {
    !p.is_zombie()
        && p.exe.as_deref() == Some(exe)
        && flag_value(&p.cmdline, "-address") == Some(address)
        && flag_value(&p.cmdline, "-namespace") == Some(namespace)
        && !matches!(
            p.cmdline.last().map(String::as_str),
            Some("start" | "delete")
        )
}

/// PIDs of the shim servers of `rt` serving `c`.
pub fn shim_servers(c: &Containerd, rt: &Runtime) -> Vec<i32> {
    let address = c.address().display().to_string();
    procfs::processes()
        .into_values()
        .filter(|p| is_shim_server(p, &rt.shim_exe, &address, c.namespace()))
        .map(|p| p.pid)
        .collect()
}

/// Starts `count` idle containers on `rt`, measures its shims, and removes
/// the containers again (also when measuring failed).
pub fn measure(c: &Containerd, rt: &Runtime, count: usize) -> Result<MemoryResult> {
    let ids: Vec<String> = (0..count)
        .map(|i| format!("mem-{}-{i}", rt.label))
        .collect();
    let measured = start_and_measure(c, rt, &ids);
    let mut removal = Ok(());
    let existing = c.containers()?;
    for id in ids.iter().filter(|id| existing.contains(id)) {
        if let Err(e) = c.remove(id) {
            removal = Err(e).with_context(|| format!("removing {id}"));
        }
    }
    eprintln!("[memory] {}: removed the containers", rt.label);
    let result = measured?;
    removal?;
    Ok(result)
}

fn start_and_measure(c: &Containerd, rt: &Runtime, ids: &[String]) -> Result<MemoryResult> {
    ensure!(!ids.is_empty(), "no containers to measure");
    for (i, id) in ids.iter().enumerate() {
        c.run_detached(&RunOptions::new(id, ["sleep", "1000"]).runtime(rt.name))?;
        c.wait_status(id, "RUNNING", Duration::from_secs(30))?;
        eprintln!("[memory] {} container {}/{}", rt.label, i + 1, ids.len());
    }
    thread::sleep(SETTLE);
    let pids = shim_servers(c, rt);
    ensure!(
        !pids.is_empty(),
        "no shim server process of {} found (executable {})",
        rt.name,
        rt.shim_exe.display()
    );
    let shims = pids
        .into_iter()
        .map(read_rollup)
        .collect::<Result<Vec<_>>>()?;
    if shims.len() != ids.len() {
        eprintln!(
            "[memory] note: {} shim processes for {} containers of {}",
            shims.len(),
            ids.len(),
            rt.label
        );
    }
    let avg =
        |f: fn(&ShimMemory) -> u64| shims.iter().map(f).sum::<u64>() as f64 / ids.len() as f64;
    let per_container = PerContainer {
        rss_kib: avg(|s| s.rss_kib),
        pss_kib: avg(|s| s.pss_kib),
        anon_kib: avg(|s| s.anon_kib),
    };
    eprintln!(
        "[memory] {}: {} shims, per container Rss {:.0} KiB, Pss {:.0} KiB, Anonymous {:.0} KiB",
        rt.label,
        shims.len(),
        per_container.rss_kib,
        per_container.pss_kib,
        per_container.anon_kib
    );
    Ok(MemoryResult {
        containers: ids.len(),
        shims,
        per_container,
    })
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

    fn proc(cmdline: &[&str], exe: &str) -> ProcInfo {
        ProcInfo {
            pid: 10,
            ppid: 1,
            start: 1,
            state: 'S',
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
            exe: Some(PathBuf::from(exe)),
            environ: Vec::new(),
        }
    }

    #[test]
    fn shim_server_matching() {
        let exe = Path::new("/usr/bin/containerd-shim-runc-v2");
        let server = [
            "containerd-shim-runc-v2",
            "-namespace",
            "ns1",
            "-id",
            "c1",
            "-address",
            "/tmp/x/c.sock",
        ];
        let yes = |args: &[&str], exe_path: &str| {
            is_shim_server(&proc(args, exe_path), exe, "/tmp/x/c.sock", "ns1")
        };
        assert!(yes(&server, "/usr/bin/containerd-shim-runc-v2"));
        assert!(!yes(&server, "/usr/local/bin/containerd-shim-runc-v2"));
        let mut start = server.to_vec();
        start.push("start");
        assert!(!yes(&start, "/usr/bin/containerd-shim-runc-v2"));
        let mut other_ns = server;
        other_ns[2] = "ns10";
        assert!(!yes(&other_ns, "/usr/bin/containerd-shim-runc-v2"));
        let mut other_addr = server;
        other_addr[6] = "/tmp/x/c.sock2";
        assert!(!yes(&other_addr, "/usr/bin/containerd-shim-runc-v2"));
    }
}
