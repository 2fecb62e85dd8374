//! The harness of the command-line tests: a private state root and a
//! busybox bundle per test, the `strata` binary run with a time limit, and
//! a check that a test left no container process, cgroup, mount or state
//! behind.
//!
//! The tests need root, and `/bin/busybox` (Debian's busybox-static).
//! Container processes outlive the `strata create` that made them, so the
//! test process makes itself a child subreaper: they become its children
//! and it reaps the ones it was told about, never any other.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::Value;

/// How long one `strata` command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The prefix of each fixture's own top-level cgroup. Fixtures share no
/// parent cgroup: one fixture removing a shared parent as it finishes
/// would race with another creating its cgroup below it.
pub const CGROUP_PREFIX: &str = "strata-cli-test";

/// The `strata` binary under test.
pub fn strata_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

/// Makes the test process a child subreaper, once.
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag of the
        // calling process.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
    });
}

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// Its exit code (128 + signal if killed).
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Output {
    /// Panics unless the command exited 0.
    #[track_caller]
    pub fn ok(self) -> Output {
        assert_eq!(
            self.code,
            0,
            "`{}` failed:\n{}",
            self.command,
            self.describe()
        );
        self
    }

    /// Panics unless the command failed with exit code 1 and `text` in its
    /// standard error.
    #[track_caller]
    pub fn fails_with(&self, text: &str) {
        assert_eq!(
            self.code,
            1,
            "`{}` should fail:\n{}",
            self.command,
            self.describe()
        );
        assert!(
            self.stderr.contains(text),
            "`{}` should say {text:?}:\n{}",
            self.command,
            self.describe()
        );
    }

    /// Standard output parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}` printed no JSON ({e}):\n{}",
                self.command,
                self.describe()
            )
        })
    }

    /// The output for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A command started in the background.
pub struct Running {
    child: Child,
    command: String,
    out: PathBuf,
    err: PathBuf,
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for it to finish (killing it after `timeout`).
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "`{}` did not finish within {timeout:?}:\n{}\n{}",
                    self.command,
                    read(&self.out),
                    read(&self.err)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Output {
            command: self.command,
            code: status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(-1),
            stdout: read(&self.out),
            stderr: read(&self.err),
        }
    }
}

fn read(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    text
}

/// Unique numbers for output files and names.
fn next() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// One test's world: a temporary directory holding the state root, a
/// bundle with a busybox root filesystem, and a cgroup path of its own.
pub struct Fixture {
    /// The temporary directory.
    pub dir: tempfile::TempDir,
    /// The `--root` of every command.
    pub root: PathBuf,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The cgroup parent path of this test's containers, its own
    /// top-level cgroup (named with [`CGROUP_PREFIX`]).
    pub cgroup: String,
    pids: std::sync::Mutex<BTreeSet<i32>>,
    ids: std::sync::Mutex<BTreeSet<String>>,
}

impl Fixture {
    /// A fresh fixture named after the test; its bundle's `config.json`
    /// comes from `strata spec` and runs `args` without a terminal.
    pub fn new(name: &str, args: &[&str]) -> Fixture {
        become_subreaper();
        let dir = tempfile::Builder::new()
            .prefix(&format!("scli-{name}-"))
            .tempdir_in("/tmp")
            .expect("tempdir");
        let root = dir.path().join("root");
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).expect("bundle dir");
        strata_e2e::image::unpack_rootfs(&bundle.join("rootfs")).expect("rootfs");
        let unique = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fx = Fixture {
            cgroup: format!("/{CGROUP_PREFIX}-{unique}"),
            dir,
            root,
            bundle,
            pids: Default::default(),
            ids: Default::default(),
        };
        fx.strata(&["spec", "--bundle", fx.bundle.to_str().expect("utf-8")])
            .ok();
        fx.edit_spec(|spec| {
            spec["process"]["terminal"] = Value::Bool(false);
            spec["process"]["args"] = serde_json::json!(args);
        });
        fx
    }

    /// Changes the bundle's `config.json`; the cgroups path is set after
    /// `change` to one per container id, so containers never share one.
    pub fn edit_spec(&self, change: impl FnOnce(&mut Value)) {
        let path = self.bundle.join("config.json");
        let mut spec: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read config")).expect("json");
        change(&mut spec);
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).expect("encode"))
            .expect("write config");
    }

    /// Points the bundle's cgroups path at the cgroup of container `id`.
    fn use_cgroup_of(&self, id: &str) {
        let path = format!("{}/{id}", self.cgroup);
        self.edit_spec(|spec| spec["linux"]["cgroupsPath"] = Value::String(path));
    }

    /// A `strata` command with this fixture's root, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(strata_bin());
        cmd.arg("--root").arg(&self.root).args(args);
        cmd.env_remove("STRATA_CONFIG");
        cmd
    }

    /// Starts `strata ARGS` in the background: standard input from
    /// /dev/null, output to files (containers may keep them open).
    pub fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_command(self.command(args), args)
    }

    /// Starts a prepared command like [`Fixture::spawn`].
    pub fn spawn_command(&self, mut cmd: Command, args: &[&str]) -> Running {
        let n = next();
        let out = self.dir.path().join(format!("out.{n}"));
        let err = self.dir.path().join(format!("err.{n}"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"));
        let child = cmd.spawn().expect("spawn strata");
        Running {
            child,
            command: format!("strata {}", args.join(" ")),
            out,
            err,
        }
    }

    /// Runs `strata ARGS` to completion.
    #[track_caller]
    pub fn strata(&self, args: &[&str]) -> Output {
        self.spawn(args).wait(COMMAND_TIMEOUT)
    }

    /// `strata create` of container `id` from the bundle, remembered for
    /// cleanup; returns the container's init pid.
    #[track_caller]
    pub fn create(&self, id: &str) -> i32 {
        self.use_cgroup_of(id);
        self.track_id(id);
        let bundle = self.bundle.to_str().expect("utf-8").to_owned();
        self.strata(&["create", "--bundle", &bundle, id]).ok();
        let pid = self.state(id)["pid"].as_i64().expect("pid") as i32;
        self.track_pid(pid);
        pid
    }

    /// `create` then `start`; returns the init pid.
    #[track_caller]
    pub fn start(&self, id: &str) -> i32 {
        let pid = self.create(id);
        self.strata(&["start", id]).ok();
        pid
    }

    /// `strata run` of container `id` (foreground unless `extra` says
    /// `--detach`), remembered for cleanup.
    pub fn run(&self, id: &str, extra: &[&str]) -> Output {
        self.spawn_run(id, extra).wait(COMMAND_TIMEOUT)
    }

    /// Starts `strata run` of container `id` in the background.
    pub fn spawn_run(&self, id: &str, extra: &[&str]) -> Running {
        self.use_cgroup_of(id);
        self.track_id(id);
        let bundle = self.bundle.to_str().expect("utf-8").to_owned();
        let mut args = vec!["run", "--bundle", &bundle];
        args.extend_from_slice(extra);
        args.push(id);
        self.spawn(&args)
    }

    /// The parsed `strata state ID`.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        self.strata(&["state", id]).ok().json()
    }

    /// The status `strata state ID` reports.
    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .expect("status")
            .to_owned()
    }

    /// Waits until container `id` reports `status`.
    #[track_caller]
    pub fn wait_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let out = self.strata(&["state", id]);
            if out.code == 0 && out.json()["status"] == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never became {status}: {}",
                out.describe()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Remembers a container id for cleanup.
    pub fn track_id(&self, id: &str) {
        self.ids.lock().expect("ids").insert(id.to_owned());
    }

    /// Remembers a process (a child of the test once its creator exits)
    /// to reap as soon as it exits, and to check at the end.
    pub fn track_pid(&self, pid: i32) {
        if pid > 0 {
            self.pids.lock().expect("pids").insert(pid);
            reap_in_background(pid);
        }
    }

    /// The cgroup directories of container `id` on this host.
    pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        let relative = format!("{}/{id}", self.cgroup);
        let mut dirs = Vec::new();
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for entry in entries.flatten() {
                let dir = entry.path().join(relative.trim_start_matches('/'));
                if dir.exists() {
                    dirs.push(dir);
                }
            }
        }
        // A unified (v2-only) host has the cgroup right below the root.
        let unified = Path::new("/sys/fs/cgroup").join(relative.trim_start_matches('/'));
        if unified.exists() && !dirs.contains(&unified) {
            dirs.push(unified);
        }
        dirs
    }

    /// Deletes every container the test made, reaps their processes, and
    /// asserts that nothing is left: no process, cgroup, state directory
    /// or mount.
    #[track_caller]
    pub fn finish(self) {
        let leftovers = self.clean_up();
        assert!(
            leftovers.is_empty(),
            "left behind:\n{}",
            leftovers.join("\n")
        );
    }

    /// Removes what the test left; returns what had to be removed or is
    /// still there.
    fn clean_up(&self) -> Vec<String> {
        let mut left = Vec::new();
        let ids: Vec<String> = self.ids.lock().expect("ids").iter().cloned().collect();
        for id in &ids {
            if self.root.join(id).exists() {
                left.push(format!("state of {id}"));
                let _ = self.spawn(&["delete", "--force", id]).wait(COMMAND_TIMEOUT);
            }
        }
        let pids: Vec<i32> = self.pids.lock().expect("pids").iter().copied().collect();
        for pid in pids {
            if !reap(pid, Duration::from_secs(10)) {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                left.push(format!("process {pid}: {}", stat.trim()));
            }
        }
        for id in &ids {
            for dir in self.cgroup_dirs(id) {
                left.push(format!("cgroup {}", dir.display()));
            }
            if self.root.join(id).exists() {
                left.push(format!("state directory of {id}"));
            }
        }
        for parent in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = parent.path().join(self.cgroup.trim_start_matches('/'));
            let _ = std::fs::remove_dir(&dir);
        }
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mounts.lines() {
            if let Some(point) = line.split(' ').nth(4) {
                if point.starts_with(&prefix) {
                    left.push(format!("mount {point}"));
                }
            }
        }
        left
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // A test that failed before `finish` still cleans up.
        let _ = self.clean_up();
    }
}

/// The processes the background reaper collects once they exit.
static TO_REAP: std::sync::Mutex<BTreeSet<i32>> = std::sync::Mutex::new(BTreeSet::new());

/// Has `pid` reaped as soon as it exits. A container process that ends up
/// a child of this subreaper must be collected promptly: the init of its
/// PID namespace does not finish exiting before every process of the
/// namespace is reaped, and a runtime's delete waits for that init.
pub fn reap_in_background(pid: i32) {
    static START: Once = Once::new();
    TO_REAP.lock().expect("reap list").insert(pid);
    START.call_once(|| {
        std::thread::spawn(|| loop {
            let pids: Vec<i32> = TO_REAP.lock().expect("reap list").iter().copied().collect();
            for pid in pids {
                let done = match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => false,
                    Ok(_) | Err(_) => true,
                };
                if done {
                    TO_REAP.lock().expect("reap list").remove(&pid);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        });
    });
}

/// Reaps `pid` if it is (or becomes, within `patience`) an exited child of
/// this process; true once it no longer exists.
pub fn reap(pid: i32, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => {}
            // Not (or no longer) a child: it is gone, or someone else's.
            Err(_) => {}
        }
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A random-enough container id.
pub fn unique_id(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), next())
}
