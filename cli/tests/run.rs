//! `strata run`: output reaching the caller, exit codes (including death
//! by a signal sent from another command), detached runs, and a bundle
//! made by `strata spec`.

mod common;

use std::time::Duration;

use common::{unique_id, Fixture, COMMAND_TIMEOUT};

#[test]
fn foreground_output_and_exit_codes() {
    let fx = Fixture::new("run", &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    let id = unique_id("seven");
    let out = fx.run(&id, &[]);
    assert_eq!(out.code, 7, "{}", out.describe());
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    // The container was deleted on the way out.
    assert!(!fx.root.join(&id).exists());
    assert!(fx.cgroup_dirs(&id).is_empty());

    fx.edit_spec(|s| s["process"]["args"] = serde_json::json!(["true"]));
    let zero = unique_id("zero");
    let out = fx.run(&zero, &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    fx.finish();
}

#[test]
fn killed_from_another_command() {
    let fx = Fixture::new("killed", &["sleep", "100"]);
    let id = unique_id("nine");
    let pid_file = fx.dir.path().join("run.pid");
    let running = fx.spawn_run(&id, &["--pid-file", pid_file.to_str().expect("utf-8")]);
    fx.wait_status(&id, "running");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .parse()
        .expect("a pid");
    assert_eq!(fx.state(&id)["pid"], pid);
    fx.strata(&["kill", &id, "9"]).ok();
    let out = running.wait(COMMAND_TIMEOUT);
    assert_eq!(out.code, 137, "{}", out.describe());
    assert!(!fx.root.join(&id).exists());
    fx.finish();
}

#[test]
fn signals_reach_a_foreground_container() {
    // A shell that traps TERM exits 42 when the runtime passes TERM on.
    let fx = Fixture::new(
        "forward",
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    );
    let id = unique_id("fwd");
    let running = fx.spawn_run(&id, &[]);
    fx.wait_status(&id, "running");
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal strata run");
    let out = running.wait(COMMAND_TIMEOUT);
    assert_eq!(out.code, 42, "{}", out.describe());
    assert_eq!(out.stdout, "ready\n");
    fx.finish();
}

#[test]
fn detached_run_keeps_running() {
    let fx = Fixture::new("detach", &["sleep", "100"]);
    let id = unique_id("bg");
    let out = fx.run(&id, &["--detach"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let state = fx.state(&id);
    assert_eq!(state["status"], "running");
    fx.track_pid(state["pid"].as_i64().expect("pid") as i32);
    fx.strata(&["delete", "--force", &id]).ok();
    fx.finish();
}

#[test]
fn spec_output_runs() {
    let fx = Fixture::new("spec", &["true"]);
    // Start again from what `strata spec` writes, with only the command
    // and the cgroup changed: terminal, mounts, masked paths, capabilities
    // and namespaces as written. The terminal is relayed to the caller.
    std::fs::remove_file(fx.bundle.join("config.json")).expect("remove config");
    let bundle = fx.bundle.to_str().expect("utf-8");
    fx.strata(&["spec", "--bundle", bundle]).ok();
    fx.strata(&["spec", "--bundle", bundle])
        .fails_with("File config.json exists. Remove it first");
    fx.edit_spec(|s| {
        assert_eq!(s["process"]["terminal"], true);
        assert_eq!(s["process"]["args"], serde_json::json!(["sh"]));
        s["process"]["args"] = serde_json::json!(["sh", "-c", "echo from-spec; exit 5"]);
    });
    let id = unique_id("spec");
    let out = fx.run(&id, &[]);
    assert_eq!(out.code, 5, "{}", out.describe());
    assert!(out.stdout.contains("from-spec"), "{}", out.describe());
    fx.finish();
}
