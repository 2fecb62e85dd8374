//! Check of the harness itself: a fixture dropped while a container's
//! cgroup is frozen still removes the container's processes and cgroups.

use std::time::Duration;

use strata_e2e::{Containerd, RunOptions, RUNC};

/// runc pauses a container with the freezer; dropping the fixture after
/// containerd died thaws and kills it.
#[test]
fn fixture_drop_cleans_up_frozen_container_runc() {
    let c = Containerd::start(RUNC).unwrap();
    c.run_detached(&RunOptions::new("frozen", ["sleep", "1000"]))
        .unwrap();
    let t = c
        .wait_status("frozen", "RUNNING", Duration::from_secs(20))
        .unwrap();
    c.ctr(&["tasks", "pause", "frozen"]).unwrap().ok().unwrap();
    c.wait_status("frozen", "PAUSED", Duration::from_secs(20))
        .unwrap();
    let cgroups = c.cgroup_ns_dirs();
    assert!(!cgroups.is_empty());
    // SAFETY: kill(2) of the fixture's own containerd by PID.
    unsafe {
        libc::kill(c.pid(), libc::SIGKILL);
    }
    drop(c);
    assert!(
        !strata_e2e::procfs::alive(t.pid as i32),
        "pid {} survived",
        t.pid
    );
    for d in cgroups {
        assert!(!d.exists(), "{} still exists", d.display());
    }
}
