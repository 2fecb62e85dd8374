//! The task events containerd publishes for a container's life, as
//! `ctr events` shows them.

use std::time::Duration;

use strata_e2e::{assert_code, runtime_tests, Containerd, Event, RunOptions};

const WAIT: Duration = Duration::from_secs(20);

/// Create, start, an exec (added, started, exits 4), SIGKILL (the init
/// exits 137) and delete each publish their event, in that order, with the
/// init's PID as `ctr task ls` shows it.
fn task_lifecycle_events(c: &Containerd) {
    let id = "evented";
    let watcher = c.watch_events().unwrap();

    c.run_detached(&RunOptions::new(id, ["sleep", "100"]))
        .unwrap();
    let task = c.wait_status(id, "RUNNING", WAIT).unwrap();
    let out = c.exec(id, "ex1", &["sh", "-c", "exit 4"]).unwrap();
    assert_code(&out, 4);
    c.kill(id, Some("SIGKILL"), false).unwrap().ok().unwrap();
    c.wait_status(id, "STOPPED", WAIT).unwrap();
    assert_eq!(c.delete_task(id).unwrap(), 137);
    c.delete_container(id).unwrap();
    watcher
        .wait_for(WAIT, |e| {
            e.topic == "/tasks/delete" && e.container_id() == id
        })
        .unwrap();
    // containers/delete comes after tasks/delete; wait for it so nothing
    // of interest is still in flight when the watcher stops.
    watcher
        .wait_for(WAIT, |e| {
            e.topic == "/containers/delete" && e.container_id() == id
        })
        .unwrap();
    let raw = watcher.raw();
    let all = watcher.stop();

    let events: Vec<&Event> = all
        .iter()
        .filter(|e| e.topic.starts_with("/tasks/") && e.container_id() == id)
        .collect();
    let topics: Vec<&str> = events.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/exit",
            "/tasks/delete",
        ],
        "unexpected task events; `ctr events` printed:\n{raw}"
    );
    let [create, start, added, started, exec_exit, init_exit, delete] = events[..] else {
        unreachable!()
    };
    let pid = u64::from(task.pid);
    assert_eq!(create.u64_field("pid"), pid, "create: {create:?}");
    assert_eq!(start.u64_field("pid"), pid, "start: {start:?}");
    let bundle = c.task_dir().join(id);
    assert_eq!(
        create.str_field("bundle"),
        bundle.display().to_string(),
        "create: {create:?}"
    );

    assert_eq!(added.str_field("exec_id"), "ex1", "exec-added: {added:?}");
    assert_eq!(
        started.str_field("exec_id"),
        "ex1",
        "exec-started: {started:?}"
    );
    let exec_pid = started.u64_field("pid");
    assert!(exec_pid > 0 && exec_pid != pid, "exec-started: {started:?}");

    // The exec's exit comes first, then the init's.
    assert_eq!(
        exec_exit.str_field("id"),
        "ex1",
        "first exit: {exec_exit:?}"
    );
    assert_eq!(
        exec_exit.u64_field("pid"),
        exec_pid,
        "first exit: {exec_exit:?}"
    );
    assert_eq!(
        exec_exit.u64_field("exit_status"),
        4,
        "first exit: {exec_exit:?}"
    );
    assert_eq!(init_exit.str_field("id"), id, "second exit: {init_exit:?}");
    assert_eq!(
        init_exit.u64_field("pid"),
        pid,
        "second exit: {init_exit:?}"
    );
    assert_eq!(
        init_exit.u64_field("exit_status"),
        137,
        "second exit: {init_exit:?}"
    );

    assert_eq!(delete.u64_field("pid"), pid, "delete: {delete:?}");
    assert_eq!(delete.u64_field("exit_status"), 137, "delete: {delete:?}");
}

runtime_tests!(task_lifecycle_events);
