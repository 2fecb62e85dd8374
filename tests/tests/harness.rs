//! Checks of the harness itself: the leftover checker sees what a running
//! container leaves, and the fixture cleans it up.

use std::path::PathBuf;

use strata_e2e::containerd::shim_socket_path;
use strata_e2e::{runtime_tests, Containerd, ContainerdOptions, RunOptions};

/// While a container runs, the checker reports its process, its rootfs
/// mount, its cgroups, its registration and its shim socket; once it is
/// removed, nothing.
fn leftover_checker_sees_running_container(c: &Containerd) {
    let before = c.snapshot();
    c.run_detached(&RunOptions::new("lingering", ["sleep", "1000"]))
        .unwrap();
    c.wait_status("lingering", "RUNNING", std::time::Duration::from_secs(20))
        .unwrap();
    let left = c.leftovers(&before).join("\n");
    for want in [
        "container still registered in containerd: lingering",
        "task still present: lingering",
        "process: ",
        "mount: ",
        "cgroup: ",
    ] {
        assert!(left.contains(want), "checker missed {want:?} in:\n{left}");
    }
    assert!(
        left.contains("sleep 1000"),
        "checker missed the container process:\n{left}"
    );
    // The runtime under test really is the one serving the container.
    let shim = if c.runtime() == strata_e2e::RUNC {
        "containerd-shim-runc-v2"
    } else {
        strata_e2e::containerd::SHIM_NAME
    };
    assert!(
        left.lines()
            .any(|l| l.starts_with("process: ") && l.contains(shim)),
        "no {shim} process among:\n{left}"
    );
    assert!(
        left.contains("shim socket: "),
        "checker missed the shim socket:\n{left}"
    );
    c.remove("lingering").unwrap();
    c.assert_no_leftovers(&before);
}

runtime_tests!(leftover_checker_sees_running_container);

/// Dropping a fixture with a running container removes everything: its
/// processes, mounts, cgroups, shim socket and directory.
#[test]
fn fixture_drop_cleans_up_runc() {
    drop_with_running_container(false);
}

/// The same when containerd died first, so the shim and the container are
/// orphans that only the fixture's own cleanup can find.
#[test]
fn fixture_drop_after_containerd_crash_cleans_up_runc() {
    drop_with_running_container(true);
}

fn drop_with_running_container(crash: bool) {
    let c = Containerd::start(strata_e2e::RUNC).unwrap();
    c.run_detached(&RunOptions::new("abandoned", ["sleep", "1000"]))
        .unwrap();
    let t = c
        .wait_status("abandoned", "RUNNING", std::time::Duration::from_secs(20))
        .unwrap();
    let dir: PathBuf = c.dir().to_path_buf();
    let cgroups = c.cgroup_ns_dirs();
    assert!(!cgroups.is_empty());
    let socket = shim_socket_path(c.address(), c.namespace(), "abandoned");
    assert!(socket.exists(), "{} missing", socket.display());
    let pids = c.our_pids();
    assert!(
        pids.len() >= 3,
        "expected containerd, shim and sleep: {pids:?}"
    );
    if crash {
        // SAFETY: kill(2) of the fixture's own containerd by PID.
        unsafe {
            libc::kill(c.pid(), libc::SIGKILL);
        }
    }
    drop(c);
    assert!(!socket.exists(), "{} still exists", socket.display());
    assert!(!dir.exists(), "{} still exists", dir.display());
    for p in pids.iter().chain(std::iter::once(&(t.pid as i32))) {
        assert!(!strata_e2e::procfs::alive(*p), "pid {p} survived");
    }
    for d in cgroups {
        assert!(!d.exists(), "{} still exists", d.display());
    }
}

/// The CRI plugin can be switched on (with `restrict_oom_score_adj`, as
/// root here lacks CAP_SYS_RESOURCE) and containerd still starts.
#[test]
fn cri_can_be_enabled_runc() {
    let mut opts = ContainerdOptions::new(strata_e2e::RUNC);
    opts.cri = true;
    opts.import_image = false;
    let c = Containerd::start_with(opts).unwrap();
    let plugins = c.ctr(&["plugins", "ls"]).unwrap().ok().unwrap();
    let cri = plugins
        .stdout
        .lines()
        .find(|l| l.contains("io.containerd.grpc.v1") && l.contains(" cri "))
        .unwrap_or_else(|| panic!("no cri plugin listed:\n{}", plugins.stdout));
    assert!(cri.trim_end().ends_with("ok"), "cri plugin not ok: {cri}");
}
