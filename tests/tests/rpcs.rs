//! Task RPCs beyond the basic lifecycle: listing a container's processes
//! (Pids), signalling all of them (Kill with `all`), and the answer to RPCs
//! the shim does not implement.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use strata_e2e::{procfs, run_case, runtime_tests, CmdOutput, Containerd, RunOptions, STRATA};

const WAIT: Duration = Duration::from_secs(20);

/// Where `ctr task exec -d` is told to put the I/O fifos of `exec_id`:
/// `ctr` leaves them behind (nothing removes them when the process is
/// deleted), so [`delete_exec`] removes them.
fn detached_fifo_dir(c: &Containerd, exec_id: &str) -> PathBuf {
    c.dir().join("detached-fifos").join(exec_id)
}

/// `ctr task exec -d`: starts a process in container `id` and returns
/// without waiting for it. Delete it with [`delete_exec`] once it exited.
fn exec_detached(c: &Containerd, id: &str, exec_id: &str, args: &[&str]) {
    let mut cmd = c.ctr_command();
    cmd.args(["tasks", "exec", "-d", "--fifo-dir"])
        .arg(detached_fifo_dir(c, exec_id))
        .args(["--exec-id", exec_id, id])
        .args(args);
    strata_e2e::command::run(cmd, None, WAIT)
        .unwrap()
        .ok()
        .unwrap();
}

/// `ctr task rm --exec-id`: deletes a stopped exec'd process (and so the
/// I/O fifos `ctr` left for it); returns its exit status, which is `ctr`'s
/// exit code.
fn delete_exec(c: &Containerd, id: &str, exec_id: &str) -> i32 {
    let out = c.ctr(&["tasks", "rm", "--exec-id", exec_id, id]).unwrap();
    assert!(
        out.stderr.trim().is_empty(),
        "deleting exec {exec_id}: {out}"
    );
    std::fs::remove_dir_all(detached_fifo_dir(c, exec_id)).unwrap();
    out.code
}

/// The host PID of the fixture's one process whose arguments are `argv`.
fn find_process(c: &Containerd, argv: &[&str]) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        let table = procfs::processes();
        let found: Vec<i32> = c
            .our_pids()
            .into_iter()
            .filter(|p| {
                table
                    .get(p)
                    .is_some_and(|p| !p.is_zombie() && p.cmdline == argv)
            })
            .collect();
        match found[..] {
            [pid] => return pid,
            [] if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => panic!("expected one process {argv:?}, found {found:?}"),
        }
    }
}

/// The PIDs `ctr task ps ID` lists (first column below the header).
fn task_ps(c: &Containerd, id: &str) -> BTreeSet<u32> {
    let out = c.ctr(&["tasks", "ps", id]).unwrap().ok().unwrap();
    let mut lines = out.stdout.lines();
    assert!(
        lines.next().is_some_and(|h| h.starts_with("PID")),
        "no header: {out}"
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("bad line {l:?} in {out}"))
        })
        .collect()
}

/// `ctr task ps` lists the init and an exec'd process by host PID.
fn pids_lists_processes(c: &Containerd) {
    let id = "listing";
    c.run_detached(&RunOptions::new(id, ["sleep", "1000"]))
        .unwrap();
    let task = c.wait_status(id, "RUNNING", WAIT).unwrap();
    assert_eq!(task_ps(c, id), BTreeSet::from([task.pid]));

    exec_detached(c, id, "extra", &["sleep", "1001"]);
    let extra = find_process(c, &["sleep", "1001"]) as u32;
    assert_eq!(task_ps(c, id), BTreeSet::from([task.pid, extra]));

    c.kill(id, Some("SIGKILL"), true).unwrap().ok().unwrap();
    c.wait_status(id, "STOPPED", WAIT).unwrap();
    assert_eq!(delete_exec(c, id, "extra"), 137);
    assert_eq!(c.delete_task(id).unwrap(), 137);
    c.delete_container(id).unwrap();
}

/// A shell that records a SIGTERM in `/tmp/terms` and goes on; `name`
/// tells the processes apart.
fn term_trapper(name: &str) -> String {
    format!(
        "trap 'echo {name} >> /tmp/terms' TERM; touch /tmp/{name}-ready; \
         while true; do sleep 1; done"
    )
}

/// Polls `cat /tmp/terms` in the container until it lists exactly `want`
/// (in any order).
fn wait_terms(c: &Containerd, id: &str, want: &[&str]) {
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        let out: CmdOutput = c
            .exec(
                id,
                &format!("cat-{n}"),
                &["sh", "-c", "cat /tmp/terms 2>/dev/null; true"],
            )
            .unwrap();
        let mut got: Vec<&str> = out.stdout.lines().collect();
        got.sort_unstable();
        let mut want = want.to_vec();
        want.sort_unstable();
        if got == want {
            return;
        }
        if Instant::now() >= deadline {
            panic!("/tmp/terms never listed {want:?}: {out}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `ctr task kill -a` signals every process: SIGTERM reaches the init and
/// an exec'd process (both trap it and live on), and SIGKILL ends both.
fn kill_all_processes(c: &Containerd) {
    let id = "trappers";
    c.run_detached(&RunOptions::new(id, ["sh", "-c", &term_trapper("init")]))
        .unwrap();
    let task = c.wait_status(id, "RUNNING", WAIT).unwrap();
    c.wait_exec_ok(id, &["test", "-e", "/tmp/init-ready"], WAIT)
        .unwrap();
    let script = term_trapper("exec");
    exec_detached(c, id, "trapper", &["sh", "-c", &script]);
    let exec_pid = find_process(c, &["sh", "-c", &script]);
    c.wait_exec_ok(id, &["test", "-e", "/tmp/exec-ready"], WAIT)
        .unwrap();

    // TERM to all: both record it and keep running.
    c.kill(id, Some("SIGTERM"), true).unwrap().ok().unwrap();
    wait_terms(c, id, &["exec", "init"]);
    assert_eq!(
        c.task(id).unwrap().map(|t| t.status).as_deref(),
        Some("RUNNING")
    );
    assert!(procfs::alive(task.pid as i32), "the init died of SIGTERM");
    assert!(
        procfs::alive(exec_pid),
        "the exec'd process died of SIGTERM"
    );

    // KILL to all: everything ends.
    c.kill(id, Some("SIGKILL"), true).unwrap().ok().unwrap();
    c.wait_status(id, "STOPPED", WAIT).unwrap();
    let deadline = Instant::now() + WAIT;
    while procfs::alive(exec_pid) {
        assert!(
            Instant::now() < deadline,
            "exec'd pid {exec_pid} survived SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(delete_exec(c, id, "trapper"), 137);
    assert_eq!(c.delete_task(id).unwrap(), 137);
    c.delete_container(id).unwrap();
}

runtime_tests!(pids_lists_processes, kill_all_processes);

/// True if `ctr` reported a gRPC `Unimplemented` error: containerd's error
/// translation appends the class "not implemented" to the message.
fn is_unimplemented(out: &CmdOutput) -> bool {
    out.stderr.trim_end().ends_with(": not implemented")
}

/// Checkpoint (which `ctr` brackets with Pause and Resume) is not
/// implemented by the shim: it fails with code Unimplemented, not NotFound,
/// and the container keeps running.
#[test]
fn unimplemented_rpcs_strata() {
    run_case(STRATA, |c| {
        let id = "unimpl";
        c.run_detached(&RunOptions::new(id, ["sleep", "1000"]))
            .unwrap();
        c.wait_status(id, "RUNNING", WAIT).unwrap();
        let out = c.ctr(&["tasks", "checkpoint", id]).unwrap();
        assert_ne!(out.code, 0, "{out}");
        assert!(out.stderr.contains("not implemented"), "{out}");
        assert!(is_unimplemented(&out), "not an Unimplemented error: {out}");
        assert!(!out.stderr.contains("not found"), "{out}");
        c.wait_status(id, "RUNNING", WAIT).unwrap();
        assert_eq!(c.remove(id).unwrap(), 137);
    });
}
