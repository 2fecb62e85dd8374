//! A Strata shim server that dies (SIGKILL) takes its container with it:
//! containerd's clean-up after a dead shim (`shim delete`) removes the
//! container's processes, cgroups and rootfs mount, records exit status 137,
//! and the container ID can be used again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use strata_e2e::containerd::shim_binary;
use strata_e2e::procfs::{self, ProcInfo};
use strata_e2e::{assert_code, run_case, Containerd, RunOptions, STRATA};

const WAIT: Duration = Duration::from_secs(20);
/// How soon after the kill everything must be cleaned up.
const CLEANUP: Duration = Duration::from_secs(5);

/// True if `p` is the long-running shim server of container `id` in
/// `namespace`: it runs the Strata shim binary and has `-id <id>`,
/// `-namespace <namespace>` and (unlike the short-lived `start` and
/// `delete` invocations) `-socket` on its command line.
fn is_shim_server(p: &ProcInfo, shim: &Path, namespace: &str, id: &str) -> bool {
    p.exe.as_deref() == Some(shim)
        && p.has_flag("-id", id)
        && p.has_flag("-namespace", namespace)
        && p.cmdline.iter().any(|a| a == "-socket")
}

/// The entries of the fixture's fifo directory.
fn fifo_dirs(c: &Containerd) -> BTreeSet<PathBuf> {
    std::fs::read_dir(c.fifo_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Polls `check` until it returns `None` (all good) or `CLEANUP` passes;
/// panics with its last complaint.
#[track_caller]
fn eventually(what: &str, check: impl Fn() -> Option<String>) {
    let deadline = Instant::now() + CLEANUP;
    loop {
        let Some(complaint) = check() else { return };
        if Instant::now() >= deadline {
            panic!("{what} within {CLEANUP:?} of the shim's death: {complaint}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn killed_shim(c: &Containerd) {
    let id = "crashy";
    let shim = std::fs::canonicalize(shim_binary()).unwrap();
    let watcher = c.watch_events().unwrap();

    let fifos_before = fifo_dirs(c);
    c.run_detached(&RunOptions::new(id, ["sleep", "1000"]))
        .unwrap();
    let task = c.wait_status(id, "RUNNING", WAIT).unwrap();
    let sleep_pid = task.pid as i32;
    let sleep_start = procfs::read_proc(sleep_pid)
        .filter(|p| !p.is_zombie())
        .unwrap_or_else(|| panic!("pid {sleep_pid} of {id} is not running"))
        .start;

    // What the container holds on the host.
    let cgroups: Vec<_> = c
        .cgroup_ns_dirs()
        .into_iter()
        .map(|d| d.join(id))
        .filter(|d| d.is_dir())
        .collect();
    assert!(!cgroups.is_empty(), "no cgroup of {id} found");
    let bundle = c.task_dir().join(id);
    let rootfs = bundle.join("rootfs");
    assert!(
        procfs::mounts().iter().any(|m| m.mount_point == rootfs),
        "{} is not mounted",
        rootfs.display()
    );

    let servers: Vec<ProcInfo> = procfs::processes()
        .into_values()
        .filter(|p| !p.is_zombie() && is_shim_server(p, &shim, c.namespace(), id))
        .collect();
    assert_eq!(
        servers.len(),
        1,
        "expected one shim server for {id}: {servers:#?}"
    );
    let server = servers[0].pid;
    // SAFETY: kill(2) by PID of the shim server this test's containerd
    // started for this test's container.
    assert_eq!(unsafe { libc::kill(server, libc::SIGKILL) }, 0);

    eventually("the shim server did not die", || {
        procfs::alive(server).then(|| format!("pid {server} alive"))
    });
    eventually("the container's process survived", || {
        procfs::read_proc(sleep_pid)
            .filter(|p| !p.is_zombie() && p.start == sleep_start)
            .map(|p| p.describe())
    });
    eventually("the container's cgroups remained", || {
        let left: Vec<_> = cgroups.iter().filter(|d| d.exists()).collect();
        (!left.is_empty()).then(|| format!("{left:?}"))
    });
    eventually("the rootfs stayed mounted", || {
        let left = procfs::mounts_under(&bundle);
        (!left.is_empty()).then(|| format!("{left:?}"))
    });
    eventually("the task is still listed as running", || {
        c.task(id)
            .unwrap()
            .filter(|t| t.status == "RUNNING")
            .map(|t| format!("{t:?}"))
    });

    // containerd records the exit as a SIGKILL.
    let exit = watcher
        .wait_for(WAIT, |e| e.topic == "/tasks/exit" && e.container_id() == id)
        .unwrap();
    assert_eq!(exit.str_field("id"), id, "{exit:?}");
    assert_eq!(exit.u64_field("exit_status"), 137, "{exit:?}");
    drop(watcher);

    // Removing what is left succeeds (the task may already be gone).
    let out = c.ctr(&["tasks", "rm", id]).unwrap();
    assert!(
        out.success() || out.stderr.contains("not found"),
        "`ctr task rm` failed: {out}"
    );
    let out = c.ctr(&["containers", "rm", id]).unwrap();
    assert!(
        out.success() || out.stderr.contains("not found"),
        "`ctr container rm` failed: {out}"
    );
    assert!(c.containers().unwrap().is_empty());
    // `ctr run -d` made I/O fifos for the container, which `ctr task rm`
    // removes only for a task it still finds; this one died with its shim.
    for dir in fifo_dirs(c).difference(&fifos_before) {
        std::fs::remove_dir_all(dir).unwrap();
    }

    // The same ID works again.
    let out = c.run(&RunOptions::new(id, ["echo", "again"])).unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "again\n", "{out}");
}

/// SIGKILL of the shim server of a running container.
#[test]
fn killed_shim_strata() {
    run_case(STRATA, killed_shim);
}

/// The same on the interpose class: the supervisor, a child of the killed
/// server, ends with its container.
#[test]
fn killed_shim_interpose() {
    run_case(strata_e2e::STRATA_INTERPOSE, killed_shim);
}
