//! Tests against the running kernel. They need root and a cgroup
//! filesystem, and skip (with a printed reason) without them.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
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

    /// Starts `sh -c script` held at a `read` until [`Gated::release`], so
    /// that everything it does happens inside the cgroup; its standard
    /// streams are pipes.
    fn spawn_gated(&mut self, script: &str) -> Gated {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("read _ || exit 99; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let gated = Gated {
            pid,
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            stderr: child.stderr.take().unwrap(),
        };
        self.children.push(child);
        self.cg.add_process(pid).unwrap();
        gated
    }

    /// Waits (up to 20 s) for child `pid` to exit and reaps it.
    fn wait(&mut self, pid: i32) -> ExitStatus {
        let i = self
            .children
            .iter()
            .position(|c| c.id() == pid.unsigned_abs())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.children[i].try_wait().unwrap().is_some() {
                // Reaped already; `wait` returns the status again.
                return self.children.remove(i).wait().unwrap();
            }
            assert!(Instant::now() < deadline, "{pid} did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
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

/// A child started by [`Scratch::spawn_gated`].
struct Gated {
    pid: i32,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: ChildStderr,
}

impl Gated {
    /// Lets the script go past its first `read` (later `read`s too).
    fn release(&mut self) {
        writeln!(self.stdin.as_mut().unwrap()).unwrap();
    }

    /// The next line the script prints.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }

    /// Closes its input and reads its output to the end: (stdout, stderr).
    fn output(mut self) -> (String, String) {
        drop(self.stdin.take());
        let (mut out, mut err) = (String::new(), String::new());
        self.stdout.read_to_string(&mut out).unwrap();
        self.stderr.read_to_string(&mut err).unwrap();
        (out, err)
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
    // The shell may have stopped by itself first: at the pids limit its
    // fork fails and it exits with status 2. Either way it must be gone.
    for child in s.children.drain(..) {
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        match waitpid(pid, None).unwrap() {
            WaitStatus::Signaled(_, Signal::SIGKILL, _) | WaitStatus::Exited(_, 2) => {}
            other => panic!("{pid} ended with {other:?}"),
        }
    }
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

/// Runs `script` gated inside `s`'s cgroup to its end: (status, stdout,
/// stderr).
fn run_inside(s: &mut Scratch, script: &str) -> (ExitStatus, String, String) {
    let mut g = s.spawn_gated(script);
    g.release();
    let pid = g.pid;
    let (out, err) = g.output();
    (s.wait(pid), out, err)
}

/// Reads /dev/null, /dev/zero and /dev/full, writes /dev/null and
/// /dev/zero, printing `name=status` for each; each step touches only its
/// own device.
const DEVICE_PROBE: &str = "\
cat /dev/null; echo rnull=$?; \
[ \"$(head -c 1 /dev/zero | wc -c)\" = 1 ]; echo rzero=$?; \
[ \"$(head -c 1 /dev/full | wc -c)\" = 1 ]; echo rfull=$?; \
echo x >/dev/null; echo wnull=$?; \
echo x >/dev/zero; echo wzero=$?";

/// The probe's results as (name, succeeded).
fn probe_devices(s: &mut Scratch) -> (Vec<(String, bool)>, String) {
    let (status, out, err) = run_inside(s, DEVICE_PROBE);
    assert!(status.success(), "{status:?}: {out} {err}");
    let results = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v == "0"))
        .collect();
    (results, err)
}

fn expect_probe(pairs: &[(&str, bool)]) -> Vec<(String, bool)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[test]
fn v2_device_program_enforced_on_the_unified_mount() {
    use super::spec::{devices, rule};
    require_cgroupfs!();
    let Some(root) = unified_mount() else {
        println!("skipping: no cgroup2 mount");
        return;
    };
    let h = Hierarchy::v2(root);
    let mut s = Scratch::new(&h);
    let dir = s.cg.paths()[0].clone();

    // Allow everything, then deny reading /dev/null (c 1:3 r).
    s.cg.apply(&devices(vec![
        rule(true, 'a', None, None, "rwm"),
        rule(false, 'c', Some(1), Some(3), "r"),
    ]))
    .unwrap();
    assert_eq!(
        crate::bpf::attached_names(&dir).unwrap(),
        [crate::bpf::PROGRAM_NAME]
    );
    let (results, err) = probe_devices(&mut s);
    assert_eq!(
        results,
        expect_probe(&[
            ("rnull", false),
            ("rzero", true),
            ("rfull", true),
            ("wnull", true),
            ("wzero", true),
        ]),
        "{err}"
    );
    assert!(
        err.contains("/dev/null: Operation not permitted"),
        "not EPERM: {err}"
    );

    // Update: a deny-default list, the last rule winning over an earlier
    // one for the same device. The old program is replaced, not stacked.
    s.cg.apply(&devices(vec![
        rule(false, 'a', None, None, "rwm"),
        rule(true, 'c', Some(1), None, "rwm"),
        rule(false, 'c', Some(1), Some(5), "w"),
        rule(false, 'c', Some(1), Some(7), "rwm"),
        rule(true, 'c', Some(1), Some(7), "w"),
    ]))
    .unwrap();
    assert_eq!(
        crate::bpf::attached_names(&dir).unwrap(),
        [crate::bpf::PROGRAM_NAME]
    );
    let (results, err) = probe_devices(&mut s);
    assert_eq!(
        results,
        expect_probe(&[
            ("rnull", true),
            ("rzero", true),
            ("rfull", false),
            ("wnull", true),
            ("wzero", false),
        ]),
        "{err}"
    );

    s.cg.destroy().unwrap();
    assert!(!dir.exists());
}

#[test]
fn v1_device_rules_enforced() {
    use super::spec::{devices, rule};
    require_cgroupfs!();
    let h = Hierarchy::detect().unwrap();
    if h.version() != Version::V1 || h.mount_point("devices").is_none() {
        println!("skipping: no cgroup v1 devices hierarchy");
        return;
    }
    let mut s = Scratch::new(&h);
    let list = s.cg.path_for("devices").unwrap().join("devices.list");

    s.cg.apply(&devices(vec![
        rule(true, 'a', None, None, "rwm"),
        rule(false, 'c', Some(1), Some(3), "rwm"),
    ]))
    .unwrap();
    let (results, err) = probe_devices(&mut s);
    assert_eq!(
        results,
        expect_probe(&[
            ("rnull", false),
            ("rzero", true),
            ("rfull", true),
            ("wnull", false),
            ("wzero", true),
        ]),
        "{err}"
    );
    assert!(err.contains("/dev/null: Operation not permitted"), "{err}");

    // Update to an allow list: the kernel lists exactly it.
    s.cg.apply(&devices(vec![
        rule(false, 'a', None, None, "rwm"),
        rule(true, 'c', Some(1), Some(3), "rwm"),
        rule(true, 'c', Some(1), Some(5), "r"),
    ]))
    .unwrap();
    assert_eq!(read(&list), "c 1:3 rwm\nc 1:5 r");
    let (results, err) = probe_devices(&mut s);
    assert_eq!(
        results,
        expect_probe(&[
            ("rnull", true),
            ("rzero", true),
            ("rfull", false),
            ("wnull", true),
            ("wzero", false),
        ]),
        "{err}"
    );
    s.cg.destroy().unwrap();
    assert_gone(&h, &s.cg);
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn freeze_and_thaw_a_running_process() {
    require_cgroupfs!();
    let mut hierarchies = vec![("detected", Hierarchy::detect().unwrap())];
    if let Some(root) = unified_mount().filter(|p| p != Path::new(CGROUP_ROOT)) {
        hierarchies.push(("unified mount", Hierarchy::v2(root)));
    }
    for (label, h) in hierarchies {
        if h.version() == Version::V1 && h.mount_point("freezer").is_none() {
            println!("{label}: no freezer hierarchy; skipped");
            continue;
        }
        let mut s = Scratch::new(&h);
        let busy = s.spawn("while :; do :; done");
        let sleeper = s.spawn("exec sleep 100");
        let state = file(&s.cg, "freezer", "freezer.state", "cgroup.events");
        assert!(!s.cg.is_frozen().unwrap(), "{label}");

        s.cg.freeze().unwrap();
        assert!(s.cg.is_frozen().unwrap(), "{label}");
        match h.version() {
            Version::V1 => assert_eq!(read(&state), "FROZEN", "{label}"),
            Version::V2 => assert!(read(&state).lines().any(|l| l == "frozen 1"), "{label}"),
        }
        // A frozen busy loop burns no CPU.
        let before = cpu_ticks(busy);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(cpu_ticks(busy), before, "{label}: ran while frozen");
        s.cg.freeze().unwrap();

        s.cg.thaw().unwrap();
        assert!(!s.cg.is_frozen().unwrap(), "{label}");
        let before = cpu_ticks(busy);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            cpu_ticks(busy) > before,
            "{label}: still stopped after thaw"
        );
        assert!(cpu_ticks(sleeper) < 100, "{label}");

        s.cg.kill_all().unwrap();
        s.reap_killed();
        s.cg.destroy().unwrap();
        assert_gone(&h, &s.cg);
    }
}

#[test]
fn stats_of_a_working_process() {
    require_cgroupfs!();
    let h = Hierarchy::detect().unwrap();
    let mut s = Scratch::new(&h);
    s.cg.apply(&pids(50)).unwrap();
    // 4 MB held in a shell variable, and some CPU burnt.
    let mut g = s.spawn_gated(
        "x=$(head -c 4000000 /dev/zero | tr '\\0' a); i=0; \
         while [ $i -lt 200000 ]; do i=$((i+1)); done; echo ready; read _",
    );
    g.release();
    assert_eq!(g.line(), "ready");
    let stats = s.cg.stats().unwrap();
    println!("{stats:#?}");

    let cpu = &stats.cpu;
    assert!(cpu.usage_total_ns > 50_000_000, "{cpu:?}");
    assert!(cpu.usage_user_ns > 0, "{cpu:?}");
    assert!(
        cpu.usage_user_ns + cpu.usage_kernel_ns <= cpu.usage_total_ns * 2,
        "{cpu:?}"
    );
    if h.version() == Version::V1 {
        assert!(!cpu.per_cpu_ns.is_empty());
        assert_eq!(cpu.per_cpu_ns.iter().sum::<u64>(), cpu.usage_total_ns);
    }
    assert_eq!(stats.pids.limit, 50);
    assert!(stats.pids.current >= 1, "{:?}", stats.pids);
    let has_memory = match h.version() {
        Version::V1 => h.mount_point("memory").is_some(),
        Version::V2 => s.cg.paths()[0].join("memory.current").exists(),
    };
    if has_memory {
        let mem = &stats.memory;
        assert!(mem.usage > 4_000_000, "{mem:?}");
        assert!(mem.max_usage >= mem.usage || h.version() == Version::V2);
        assert!(mem.rss > 4_000_000, "{mem:?}");
        assert_eq!(mem.limit, u64::MAX);
        assert!(mem.pgfault > 0, "{mem:?}");
        assert!(mem.stat.len() > 10, "{mem:?}");
    }
    g.release();
    let pid = g.pid;
    let _ = g.output();
    assert!(s.wait(pid).success());
}

#[test]
fn oom_kill_is_reported() {
    require_cgroupfs!();
    let h = Hierarchy::detect().unwrap();
    let mut s = Scratch::new(&h);
    let has_memory = match h.version() {
        Version::V1 => h.mount_point("memory").is_some(),
        Version::V2 => s.cg.paths()[0].join("memory.events").exists(),
    };
    if !has_memory {
        println!("skipping: no memory controller");
        return;
    }
    // 16 MiB, and no swap to escape to.
    let memsw = file(
        &s.cg,
        "memory",
        "memory.memsw.limit_in_bytes",
        "memory.swap.max",
    );
    let swap = memsw.exists().then_some(16 << 20);
    s.cg.apply(&memory(Some(16 << 20), swap, None)).unwrap();
    let mut w = s.cg.oom_watcher().unwrap();
    assert!(!super::notify::readable(&w, 0));
    assert_eq!(w.drain().unwrap(), 0);

    let mut g = s.spawn_gated("head -c 64M /dev/zero | tail >/dev/null");
    g.release();
    assert!(
        super::notify::readable(&w, 10_000),
        "no OOM notification in 10 s"
    );
    // The kill may trail the notification; give it a moment to count.
    std::thread::sleep(Duration::from_millis(100));
    let kills = w.drain().unwrap();
    assert!(kills >= 1, "drain gave {kills}");
    let pid = g.pid;
    let _ = g.output();
    let status = s.wait(pid);
    assert!(!status.success(), "{status:?}");
    assert!(s.cg.stats().unwrap().memory.oom_kill >= 1);
    s.cg.destroy().unwrap();
    assert_gone(&h, &s.cg);
}

/// A block device of this host, as `major:minor`, for throttles.
fn some_block_device() -> Option<(i64, i64)> {
    let mut devices: Vec<(i64, i64)> = std::fs::read_dir("/sys/block")
        .ok()?
        .filter_map(|e| {
            let dev = std::fs::read_to_string(e.ok()?.path().join("dev")).ok()?;
            let (major, minor) = dev.trim().split_once(':')?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        })
        .collect();
    devices.sort_unstable();
    devices.pop()
}

#[test]
fn v1_more_resources_read_back() {
    use super::spec::{throttle, with_cpu, with_memory};
    use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};
    require_cgroupfs!();
    let h = Hierarchy::detect().unwrap();
    if h.version() != Version::V1 {
        println!("skipping: the host is not cgroup v1");
        return;
    }
    let s = Scratch::new(&h);

    let mut m = LinuxMemory::default();
    m.set_kernel(Some(64 << 20))
        .set_kernel_tcp(Some(16 << 20))
        .set_swappiness(Some(10))
        .set_disable_oom_killer(Some(true));
    s.cg.apply(&with_memory(m)).unwrap();
    let mem = s.cg.path_for("memory").unwrap();
    if mem.join("memory.kmem.tcp.limit_in_bytes").exists() {
        assert_eq!(read(mem.join("memory.kmem.tcp.limit_in_bytes")), "16777216");
    }
    assert_eq!(read(mem.join("memory.swappiness")), "10");
    assert!(read(mem.join("memory.oom_control")).contains("oom_kill_disable 1"));

    let cpu_dir = s.cg.path_for("cpu").unwrap();
    let has = |f: &str| cpu_dir.join(f).exists();
    let mut c = LinuxCpu::default();
    c.set_quota(Some(50_000)).set_period(Some(100_000));
    if has("cpu.cfs_burst_us") {
        c.set_burst(Some(10_000));
    }
    if has("cpu.idle") {
        c.set_idle(Some(1));
    }
    if has("cpu.rt_runtime_us") {
        c.set_realtime_period(Some(1_000_000))
            .set_realtime_runtime(Some(10_000));
    }
    s.cg.apply(&with_cpu(c)).unwrap();
    assert_eq!(read(cpu_dir.join("cpu.cfs_quota_us")), "50000");
    if has("cpu.cfs_burst_us") {
        assert_eq!(read(cpu_dir.join("cpu.cfs_burst_us")), "10000");
        // Lowering the quota below the old burst needs the burst first.
        let mut c = LinuxCpu::default();
        c.set_quota(Some(5_000)).set_burst(Some(2_000));
        s.cg.apply(&with_cpu(c)).unwrap();
        assert_eq!(read(cpu_dir.join("cpu.cfs_quota_us")), "5000");
        assert_eq!(read(cpu_dir.join("cpu.cfs_burst_us")), "2000");
    }
    if has("cpu.idle") {
        assert_eq!(read(cpu_dir.join("cpu.idle")), "1");
    }
    if has("cpu.rt_runtime_us") {
        assert_eq!(read(cpu_dir.join("cpu.rt_period_us")), "1000000");
        assert_eq!(read(cpu_dir.join("cpu.rt_runtime_us")), "10000");
        // A period below the old runtime needs the runtime first.
        let mut c = LinuxCpu::default();
        c.set_realtime_period(Some(5_000))
            .set_realtime_runtime(Some(1_000));
        s.cg.apply(&with_cpu(c)).unwrap();
        assert_eq!(read(cpu_dir.join("cpu.rt_period_us")), "5000");
        assert_eq!(read(cpu_dir.join("cpu.rt_runtime_us")), "1000");
        // Runtime back to 0 so the parent's budget is not held.
        let mut c = LinuxCpu::default();
        c.set_realtime_runtime(Some(0));
        s.cg.apply(&with_cpu(c)).unwrap();
    }

    match (s.cg.path_for("blkio"), some_block_device()) {
        (Some(dir), Some((major, minor))) => {
            let mut b = LinuxBlockIo::default();
            b.set_throttle_read_bps_device(Some(vec![throttle(major, minor, 1_048_576)]))
                .set_throttle_write_iops_device(Some(vec![throttle(major, minor, 100)]));
            let mut r = LinuxResources::default();
            r.set_block_io(Some(b.clone()));
            s.cg.apply(&r).unwrap();
            let file = |f: &str| read(dir.join(format!("blkio.throttle.{f}")));
            assert_eq!(file("read_bps_device"), format!("{major}:{minor} 1048576"));
            assert_eq!(file("write_iops_device"), format!("{major}:{minor} 100"));
            // A rate of 0 removes the throttle.
            b.set_throttle_read_bps_device(Some(vec![throttle(major, minor, 0)]));
            r.set_block_io(Some(b));
            s.cg.apply(&r).unwrap();
            assert_eq!(file("read_bps_device"), "");
        }
        _ => println!("no blkio hierarchy or block device; throttles not exercised"),
    }
}
