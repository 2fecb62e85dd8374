//! Tests against the running kernel. They need root and a cgroup
//! filesystem, and skip (with a printed reason) without them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::v1::{cpu, memory, pids};
use crate::{Cgroup, Hierarchy, Version, CGROUP_ROOT};

/// Returns from the test, saying why, unless it can touch real cgroups.
macro_rules! require_cgroupfs {
    () => {
        if !nix::unistd::Uid::effective().is_root() {
            println!("skipping: needs root");
            return;
        }
        if !Path::new(CGROUP_ROOT).is_dir() {
            println!("skipping: {CGROUP_ROOT} is absent");
            return;
        }
    };
}

/// A unique top-level cgroup name for this test process.
fn unique_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "strata-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test cgroup and the processes started for it, cleaned up on drop even
/// when the test fails.
struct Scratch {
    cg: Cgroup,
    /// The top-level cgroup above `cg`, if `cg` is nested.
    top: Option<Cgroup>,
    children: Vec<Child>,
}

impl Scratch {
    fn new(h: &Hierarchy) -> Scratch {
        Self::nested(h, "")
    }

    /// A cgroup `below` (if not empty) a unique top-level one.
    fn nested(h: &Hierarchy, below: &str) -> Scratch {
        let top = format!("/{}", unique_name());
        let (cg, top) = if below.is_empty() {
            (Cgroup::new(h, &top).unwrap(), None)
        } else {
            let cg = Cgroup::new(h, &format!("{top}/{below}")).unwrap();
            (cg, Some(Cgroup::new(h, &top).unwrap()))
        };
        let s = Scratch {
            cg,
            top,
            children: Vec::new(),
        };
        s.cg.create().unwrap();
        s
    }

    /// Starts `sh -c script` and moves it into the cgroup before the
    /// script runs (the shell waits for a line on its stdin first), so
    /// nothing it forks escapes.
    fn spawn(&mut self, script: &str) -> i32 {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("read _ && {{ {script}; }}"))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let stdin = child.stdin.take();
        self.children.push(child);
        self.cg.add_process(pid).unwrap();
        stdin.unwrap().write_all(b"go\n").unwrap();
        pid
    }

    /// Reaps every child started, asserting SIGKILL ended it (soon: a
    /// child left running fails the test rather than stalling it).
    fn reap_killed(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in self.children.drain(..) {
            let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
            loop {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)).unwrap() {
                    WaitStatus::StillAlive if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    WaitStatus::Signaled(_, Signal::SIGKILL, _) => break,
                    other => {
                        // Leave nothing running behind the failure.
                        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                        let _ = waitpid(pid, None);
                        panic!("{pid} ended with {other:?}, not SIGKILL");
                    }
                }
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let thaw = |cg: &Cgroup| {
            for dir in cg.paths() {
                let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
                let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
            }
        };
        // A failed test may leave the cgroup frozen, where nothing can die.
        thaw(&self.cg);
        for child in &mut self.children {
            let _ = child.kill();
        }
        let _ = self.cg.kill_all();
        thaw(&self.cg);
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = self.cg.destroy();
        if let Some(top) = &self.top {
            let _ = top.destroy();
        }
    }
}

/// Asserts no directory of `cg` is left, and that no hierarchy has an entry
/// of its name at the top.
fn assert_gone(h: &Hierarchy, cg: &Cgroup) {
    for p in cg.paths() {
        assert!(!p.exists(), "{} is left", p.display());
    }
    let name = cg.name().trim_start_matches('/');
    let controllers = h.controllers().unwrap_or_default();
    let mounts: Vec<&Path> = match h.version() {
        Version::V1 => controllers
            .iter()
            .filter_map(|c| h.mount_point(c))
            .collect(),
        Version::V2 => h.mount_point("").into_iter().collect(),
    };
    for mount in mounts {
        assert!(
            !mount.join(name).exists(),
            "{name} is left under {}",
            mount.display()
        );
    }
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// The file holding `v1` on cgroup v1 or `v2` on v2, in `cg`.
fn file(cg: &Cgroup, controller: &str, v1: &str, v2: &str) -> PathBuf {
    let dir = cg.path_for(controller).unwrap();
    match cg.version() {
        Version::V1 => dir.join(v1),
        Version::V2 => dir.join(v2),
    }
}

/// The cgroup2 mount usable without controllers: the root on a v2 host,
/// the `unified` mount on a hybrid one.
fn unified_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| f[1])
        })
        .collect();
    [CGROUP_ROOT.to_owned(), format!("{CGROUP_ROOT}/unified")]
        .into_iter()
        .find(|p| points.contains(&p.as_str()))
        .map(PathBuf::from)
}

#[test]
fn detect_matches_the_host() {
    require_cgroupfs!();
    let h = Hierarchy::detect().unwrap();
    let pure_v2 = unified_mount().is_some_and(|p| p == Path::new(CGROUP_ROOT));
    let controllers = h.controllers().unwrap();
    println!("{:?}: {controllers:?}", h.version());
    if pure_v2 {
        assert_eq!(h.version(), Version::V2);
        assert_eq!(h.mount_point("memory"), Some(Path::new(CGROUP_ROOT)));
    } else {
        assert_eq!(h.version(), Version::V1);
        for c in ["memory", "pids", "cpu", "freezer"] {
            assert!(controllers.iter().any(|x| x == c), "{c} missing");
            let mount = h.mount_point(c).unwrap();
            assert!(mount.join("cgroup.procs").exists(), "{}", mount.display());
        }
        assert_ne!(h.mount_point("memory"), h.mount_point("pids"));
    }
}

#[test]
fn lifecycle_limits_processes_kill_destroy() {
    require_cgroupfs!();
    let h = Hierarchy::detect().unwrap();
    let mut s = Scratch::new(&h);
    for p in s.cg.paths() {
        assert!(p.is_dir(), "{}", p.display());
    }

    let mut r = memory(Some(64 << 20), None, None);
    r.set_pids(pids(32).pids().to_owned());
    s.cg.apply(&r).unwrap();
    assert_eq!(
        read(file(&s.cg, "memory", "memory.limit_in_bytes", "memory.max")),
        "67108864"
    );
    assert_eq!(read(file(&s.cg, "pids", "pids.max", "pids.max")), "32");
    s.cg.apply(&pids(0)).unwrap();
    assert_eq!(read(file(&s.cg, "pids", "pids.max", "pids.max")), "max");

    let mut started: Vec<i32> = (0..3).map(|_| s.spawn("exec sleep 100")).collect();
    started.sort_unstable();
    assert_eq!(s.cg.procs().unwrap(), started);
    if let Some(dir) = s.cg.path_for("memory") {
        // Every hierarchy lists them, not just the first.
        let listed = read(dir.join("cgroup.procs"));
        assert_eq!(listed.lines().count(), 3, "{listed}");
    }

    s.cg.kill_all().unwrap();
    // The kernel lists no exited process, reaped or not.
    assert!(s.cg.procs().unwrap().is_empty());
    s.reap_killed();

    s.cg.destroy().unwrap();
    assert_gone(&h, &s.cg);
    s.cg.destroy().unwrap();
}

#[test]
fn kill_all_outpaces_a_forking_process() {
    require_cgroupfs!();
    let h = Hierarchy::detect().unwrap();
    let mut s = Scratch::new(&h);
    s.cg.apply(&pids(64)).unwrap();
    s.spawn("while :; do sleep 100 & done");
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.cg.procs().unwrap().len() < 10 {
        assert!(Instant::now() < deadline, "the loop did not fork");
        std::thread::sleep(Duration::from_millis(5));
    }
    s.cg.kill_all().unwrap();
    assert!(s.cg.procs().unwrap().is_empty());
    s.reap_killed();
    s.cg.destroy().unwrap();
    assert_gone(&h, &s.cg);
}

#[test]
fn v1_memory_swap_and_cpu_read_back() {
    require_cgroupfs!();
    let h = Hierarchy::detect().unwrap();
    if h.version() != Version::V1 {
        println!("skipping: the host is not cgroup v1");
        return;
    }
    let s = Scratch::new(&h);
    let mem = s.cg.path_for("memory").unwrap();
    let limit = mem.join("memory.limit_in_bytes");
    let memsw = mem.join("memory.memsw.limit_in_bytes");

    s.cg.apply(&memory(Some(64 << 20), Some(128 << 20), Some(32 << 20)))
        .unwrap();
    assert_eq!(read(&limit), (64u64 << 20).to_string());
    assert_eq!(
        read(mem.join("memory.soft_limit_in_bytes")),
        (32u64 << 20).to_string()
    );
    if memsw.exists() {
        assert_eq!(read(&memsw), (128u64 << 20).to_string());
        // Lowering both below the current limit, then raising both past
        // the current memory+swap: each needs its own order.
        s.cg.apply(&memory(Some(32 << 20), Some(32 << 20), None))
            .unwrap();
        assert_eq!(read(&limit), (32u64 << 20).to_string());
        assert_eq!(read(&memsw), (32u64 << 20).to_string());
        s.cg.apply(&memory(Some(256 << 20), Some(512 << 20), None))
            .unwrap();
        assert_eq!(read(&limit), (256u64 << 20).to_string());
        assert_eq!(read(&memsw), (512u64 << 20).to_string());
        s.cg.apply(&memory(Some(-1), None, None)).unwrap();
        assert!(read(&limit).parse::<u64>().unwrap() > 1 << 60);
        assert!(read(&memsw).parse::<u64>().unwrap() > 1 << 60);
    } else {
        println!("no swap accounting; memory+swap order not exercised");
    }

    let mut r = cpu(Some(512), Some(25_000), Some(50_000));
    let mut c = r.cpu().clone().unwrap();
    c.set_cpus(Some("0".to_owned()))
        .set_mems(Some("0".to_owned()));
    r.set_cpu(Some(c));
    s.cg.apply(&r).unwrap();
    let cpu_dir = s.cg.path_for("cpu").unwrap();
    assert_eq!(read(cpu_dir.join("cpu.shares")), "512");
    assert_eq!(read(cpu_dir.join("cpu.cfs_period_us")), "50000");
    assert_eq!(read(cpu_dir.join("cpu.cfs_quota_us")), "25000");
    s.cg.apply(&cpu(None, Some(-1), None)).unwrap();
    assert_eq!(read(cpu_dir.join("cpu.cfs_quota_us")), "-1");
    let cpuset = s.cg.path_for("cpuset").unwrap();
    assert_eq!(read(cpuset.join("cpuset.cpus")), "0");
    assert_eq!(read(cpuset.join("cpuset.mems")), "0");

    // A rejected value names the file and the value.
    let err = s.cg.apply(&cpu(None, None, Some(1))).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "writing \"1\" to {}: ",
            cpu_dir.join("cpu.cfs_period_us").display()
        )),
        "{msg}"
    );
    assert!(!msg.contains("os error"), "{msg}");
}

#[test]
fn v1_cpuset_parents_are_filled() {
    require_cgroupfs!();
    let h = Hierarchy::detect().unwrap();
    let Some(mount) = h
        .mount_point("cpuset")
        .filter(|_| h.version() == Version::V1)
    else {
        println!("skipping: no cgroup v1 cpuset hierarchy");
        return;
    };
    let mut s = Scratch::nested(&h, "a/b");
    let top = s.top.clone().unwrap();
    let name = top.name().trim_start_matches('/').to_owned();
    let root_cpus = read(mount.join("cpuset.cpus"));
    let root_mems = read(mount.join("cpuset.mems"));
    for level in [name.clone(), format!("{name}/a"), format!("{name}/a/b")] {
        assert_eq!(
            read(mount.join(&level).join("cpuset.cpus")),
            root_cpus,
            "{level}"
        );
        assert_eq!(
            read(mount.join(&level).join("cpuset.mems")),
            root_mems,
            "{level}"
        );
    }
    // A process can join, which an empty cpuset would refuse.
    s.spawn("exec sleep 100");
    s.cg.kill_all().unwrap();
    s.reap_killed();
    // Destroying the top removes the levels below it too.
    top.destroy().unwrap();
    assert_gone(&h, &s.cg);
    assert_gone(&h, &top);
}

#[test]
fn v2_kill_and_freeze_on_the_unified_mount() {
    require_cgroupfs!();
    let Some(root) = unified_mount() else {
        println!("skipping: no cgroup2 mount");
        return;
    };
    let h = Hierarchy::v2(root.clone());
    for use_kill_file in [true, false] {
        let mut s = Scratch::new(&h);
        let dir = s.cg.paths()[0].clone();
        assert_eq!(dir, root.join(s.cg.name().trim_start_matches('/')));
        if use_kill_file && !dir.join("cgroup.kill").exists() {
            println!("no cgroup.kill on this kernel; the freezer path runs twice");
        }
        let mut started: Vec<i32> = (0..2).map(|_| s.spawn("exec sleep 100")).collect();
        started.sort_unstable();
        assert_eq!(s.cg.procs().unwrap(), started);
        s.cg.kill_all_with(use_kill_file).unwrap();
        assert!(s.cg.procs().unwrap().is_empty());
        s.reap_killed();
        assert_eq!(read(dir.join("cgroup.freeze")), "0", "left frozen");
        s.cg.destroy().unwrap();
        assert!(!dir.exists());
    }
}
