//! Podman as a real client: `podman --runtime strata` runs, execs into,
//! stops and removes containers, with podman's state in private
//! directories, the busybox root filesystem given with `--rootfs` (no
//! registry), the host network (no bridge or firewall rules) and cgroupfs.
//!
//! Podman comes from Debian's package (`apt-get install podman`); without
//! it the tests print why and pass.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use common::{become_subreaper, strata_bin};

/// How long one podman command may take.
const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);

/// Podman tests run one at a time: they share the host's libpod cgroups.
static SERIAL: Mutex<()> = Mutex::new(());

/// The podman binary, installed from Debian's package if missing.
fn podman() -> Option<PathBuf> {
    let find = || {
        ["/usr/bin/podman", "/usr/local/bin/podman"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    if let Some(path) = find() {
        return Some(path);
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", "podman"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output();
    match installed {
        Ok(out) if out.status.success() => find(),
        Ok(out) => {
            eprintln!(
                "skipping: podman is not installed and apt-get failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("skipping: podman is not installed and apt-get cannot run: {e}");
            None
        }
    }
}

/// The state root podman's runtime commands use. Podman passes
/// `--runtime-flag`s to the commands it runs itself, but not to the
/// cleanup that conmon starts when a container exits (which deletes it),
/// so the runtime keeps its default root here.
const STRATA_ROOT: &str = "/run/strata";

/// A private podman: its storage, run and temporary directories and the
/// runtime's log, all under one temporary directory.
struct Podman {
    bin: PathBuf,
    dir: tempfile::TempDir,
    rootfs: PathBuf,
    log: PathBuf,
    cgroups_before: BTreeSet<PathBuf>,
    /// The containers made, by full id.
    containers: Mutex<BTreeSet<String>>,
}

/// The cgroup directories podman makes for conmon with cgroupfs.
fn libpod_cgroups() -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for name in ["libpod_parent/conmon", "libpod_parent"] {
            let dir = entry.path().join(name);
            if dir.is_dir() {
                dirs.insert(dir);
            }
        }
    }
    dirs
}

impl Podman {
    fn new(bin: PathBuf) -> Podman {
        become_subreaper();
        let dir = tempfile::Builder::new()
            .prefix("scli-podman-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        strata_e2e::image::unpack_rootfs(&rootfs).expect("rootfs");
        for sub in ["root", "runroot", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("podman dirs");
        }
        Podman {
            bin,
            log: dir.path().join("strata.log"),
            rootfs,
            dir,
            cgroups_before: libpod_cgroups(),
            containers: Mutex::new(BTreeSet::new()),
        }
    }

    fn path(&self, sub: &str) -> String {
        self.dir.path().join(sub).to_string_lossy().into_owned()
    }

    /// `podman [private flags] ARGS`, with the runtime given flags the way
    /// podman passes them: a JSON log and `--systemd-cgroup`.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--root", &self.path("root")])
            .args(["--runroot", &self.path("runroot")])
            .args(["--tmpdir", &self.path("tmp")])
            .args(["--storage-driver", "vfs"])
            .arg("--cgroup-manager=cgroupfs")
            .arg("--events-backend=file")
            .args(["--runtime", strata_bin()])
            .args(["--runtime-flag", &format!("log={}", self.log.display())])
            .args(["--runtime-flag", "log-format=json"])
            .args(["--runtime-flag", "systemd-cgroup"])
            .args(args);
        cmd.env_remove("STRATA_CONFIG");
        cmd
    }

    /// Runs podman to completion.
    fn run(&self, args: &[&str]) -> strata_e2e::CmdOutput {
        let out = strata_e2e::command::run(self.command(args), None, PODMAN_TIMEOUT)
            .unwrap_or_else(|e| panic!("podman {args:?}: {e:#}"));
        self.reap_conmon();
        out
    }

    /// Arguments of `podman run` for the busybox root filesystem; the
    /// container's id goes to `cidfile`.
    fn run_args<'a>(
        &'a self,
        rootfs: &'a str,
        cidfile: &'a str,
        extra: &[&'a str],
    ) -> Vec<&'a str> {
        let mut args = vec![
            "run",
            "--cidfile",
            cidfile,
            "--network=host",
            "--ulimit",
            "nofile=1024:20000",
            "--ulimit",
            "nproc=4096:4096",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--rootfs", rootfs]);
        args
    }

    /// Reaps conmon processes that ended as children of this subreaper.
    fn reap_conmon(&self) {
        let me = std::process::id() as i32;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if stat.contains("(conmon)")
                && fields.first() == Some(&"Z")
                && fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(me)
            {
                let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
            }
        }
    }

    /// Processes whose command line mentions this podman's directory.
    fn our_processes(&self) -> Vec<(i32, String)> {
        let needle = self.dir.path().to_string_lossy().into_owned();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) && pid != std::process::id() as i32 {
                found.push((pid, cmdline));
            }
        }
        found
    }

    /// Cleans up and returns what was left: containers (removed with
    /// podman), processes (killed by pid), mounts (detached), runtime state
    /// and cgroups podman made.
    fn clean_up(&self) -> Vec<String> {
        let mut left = Vec::new();
        let out = self.run(&["ps", "-a", "-q"]);
        if !out.stdout.trim().is_empty() {
            left.push(format!("containers {}", out.stdout.trim()));
            self.run(&["rm", "-a", "-f", "-t", "0"]);
        }
        std::thread::sleep(Duration::from_millis(100));
        self.reap_conmon();
        for (pid, cmdline) in self.our_processes() {
            left.push(format!("process {pid}: {cmdline}"));
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let _ = common::reap(pid, Duration::from_secs(5));
        }
        self.reap_conmon();
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&prefix))
            .map(str::to_owned)
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            left.push(format!("mount {point}"));
            let _ = nix::mount::umount2(Path::new(&point), nix::mount::MntFlags::MNT_DETACH);
        }
        for id in self.containers.lock().expect("ids").iter() {
            let state = Path::new(STRATA_ROOT).join(id);
            // conmon's cleanup deletes the container shortly after it exits.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while state.exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if state.exists() {
                left.push(format!("strata state {}", state.display()));
                let _ = Command::new(strata_bin())
                    .args(["delete", "--force", id])
                    .status();
            }
            for entry in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let dir = entry.path().join(format!("libpod_parent/libpod-{id}"));
                if dir.exists() {
                    left.push(format!("cgroup {}", dir.display()));
                    let _ = std::fs::remove_dir(&dir);
                }
            }
        }
        // podman leaves conmon's cgroup; remove what this test made.
        for dir in libpod_cgroups().difference(&self.cgroups_before) {
            let _ = std::fs::remove_dir(dir);
        }
        left
    }

    /// The id podman wrote to `cidfile`, remembered for the checks.
    fn container_id(&self, cidfile: &str) -> String {
        let id = std::fs::read_to_string(cidfile)
            .expect("cidfile")
            .trim()
            .to_owned();
        self.containers.lock().expect("ids").insert(id.clone());
        id
    }

    #[track_caller]
    fn finish(self) {
        let left = self.clean_up();
        assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.clean_up();
    }
}

#[test]
fn podman_run_output_and_exit_code() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(bin) = podman() else { return };
    let pm = Podman::new(bin);
    let rootfs = pm.rootfs.to_string_lossy().into_owned();
    let cidfile = pm.path("cid");
    let mut args = pm.run_args(&rootfs, &cidfile, &["--rm"]);
    args.extend_from_slice(&["sh", "-c", "echo hi; exit 3"]);
    let out = pm.run(&args);
    pm.container_id(&cidfile);
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(out.stdout, "hi\n", "{out}");
    pm.finish();
}

#[test]
fn podman_detached_exec_stop_rm() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(bin) = podman() else { return };
    let pm = Podman::new(bin);
    let rootfs = pm.rootfs.to_string_lossy().into_owned();
    let cidfile = pm.path("cid");
    let mut args = pm.run_args(&rootfs, &cidfile, &["-d"]);
    args.extend_from_slice(&["sleep", "100"]);
    let out = pm.run(&args);
    assert_eq!(out.code, 0, "{out}");
    let ctr = pm.container_id(&cidfile);
    assert_eq!(out.stdout.trim(), ctr, "{out}");

    let out = pm.run(&["exec", &ctr, "echo", "inexec"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "inexec\n", "{out}");
    // A failed runtime command reaches podman, and the JSON log it reads.
    let out = pm.run(&["exec", &ctr, "/no/such/program"]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("/no/such/program"), "{out}");
    let log = std::fs::read_to_string(&pm.log).expect("runtime log");
    let logged = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|l| {
            l["level"] == "error" && l["msg"].as_str().is_some_and(|m| m.contains("/no/such"))
        });
    assert!(logged, "no JSON error line in the log:\n{log}");
    // podman reads the runtime's state through `strata state`.
    let out = pm.run(&["inspect", "--format", "{{.State.Status}}", &ctr]);
    assert_eq!(out.stdout.trim(), "running", "{out}");
    // The runtime's own view.
    let state = Command::new(strata_bin())
        .args(["--root", STRATA_ROOT, "state", &ctr])
        .output()
        .expect("strata state");
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).expect("state JSON");
    assert_eq!(state["status"], "running");

    let out = pm.run(&["stop", "-t", "1", &ctr]);
    assert_eq!(out.code, 0, "{out}");
    let out = pm.run(&["inspect", "--format", "{{.State.Status}}", &ctr]);
    assert_eq!(out.stdout.trim(), "exited", "{out}");
    let out = pm.run(&["rm", &ctr]);
    assert_eq!(out.code, 0, "{out}");
    let out = pm.run(&["ps", "-a", "-q"]);
    assert_eq!(out.stdout.trim(), "", "{out}");
    pm.finish();
}
