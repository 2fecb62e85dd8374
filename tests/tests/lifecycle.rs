//! Detached containers: listing, exec, signals and exit statuses.

use std::time::Duration;

use strata_e2e::{assert_code, runtime_tests, Containerd, RunOptions};

const WAIT: Duration = Duration::from_secs(20);

/// A detached container is listed as RUNNING with the host PID of its init.
fn task_list(c: &Containerd) {
    c.run_detached(&RunOptions::new("listed", ["sleep", "1000"]))
        .unwrap();
    let t = c.wait_status("listed", "RUNNING", WAIT).unwrap();
    assert!(t.pid > 0, "{t:?}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", t.pid)).unwrap_or_default();
    let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    assert_eq!(
        argv.first().copied(),
        Some(&b"sleep"[..]),
        "pid {} is not the container's sleep: {:?}",
        t.pid,
        String::from_utf8_lossy(&cmdline)
    );
    c.remove("listed").unwrap();
}

/// SIGKILL ends a detached `sleep` with status 137.
fn kill_sigkill(c: &Containerd) {
    c.run_detached(&RunOptions::new("killed", ["sleep", "1000"]))
        .unwrap();
    c.wait_status("killed", "RUNNING", WAIT).unwrap();
    c.kill("killed", Some("SIGKILL"), false)
        .unwrap()
        .ok()
        .unwrap();
    c.wait_status("killed", "STOPPED", WAIT).unwrap();
    assert_eq!(c.delete_task("killed").unwrap(), 137);
    c.delete_container("killed").unwrap();
}

/// `ctr task kill` without a signal sends SIGTERM, which an init that traps
/// it turns into its own exit status.
fn kill_default_term(c: &Containerd) {
    c.run_detached(&RunOptions::new(
        "trap",
        [
            "sh",
            "-c",
            "trap 'exit 3' TERM; touch /tmp/ready; while true; do sleep 1; done",
        ],
    ))
    .unwrap();
    c.wait_status("trap", "RUNNING", WAIT).unwrap();
    c.wait_exec_ok("trap", &["test", "-e", "/tmp/ready"], WAIT)
        .unwrap();
    c.kill("trap", None, false).unwrap().ok().unwrap();
    c.wait_status("trap", "STOPPED", WAIT).unwrap();
    assert_eq!(c.delete_task("trap").unwrap(), 3);
    c.delete_container("trap").unwrap();
}

/// A process exec'd into a running container has its own output and exit
/// code and sees the container's init as PID 1.
fn task_exec(c: &Containerd) {
    c.run_detached(&RunOptions::new("execd", ["sleep", "1000"]))
        .unwrap();
    c.wait_status("execd", "RUNNING", WAIT).unwrap();
    let out = c
        .exec(
            "execd",
            "e1",
            &["sh", "-c", "echo exec-out; echo exec-err >&2; exit 5"],
        )
        .unwrap();
    assert_code(&out, 5);
    assert_eq!(out.stdout, "exec-out\n", "{out}");
    assert_eq!(out.stderr, "exec-err\n", "{out}");
    let out = c.exec("execd", "e2", &["cat", "/proc/1/cmdline"]).unwrap();
    assert_code(&out, 0);
    assert!(out.stdout.starts_with("sleep\0"), "{out}");
    // The container is still running after its execs.
    c.wait_status("execd", "RUNNING", WAIT).unwrap();
    assert_eq!(c.remove("execd").unwrap(), 137);
}

runtime_tests!(interpose: task_list, kill_sigkill, kill_default_term, task_exec);
