//! Container lifecycles through the command line: create, start, state,
//! kill, pause, resume and delete, the status after each, and the runc
//! wording of every refusal.

mod common;

use common::{reap, unique_id, Fixture};
use std::time::Duration;

#[test]
fn create_start_kill_delete() {
    let fx = Fixture::new("lifecycle", &["sleep", "100"]);
    let id = unique_id("life");
    let pid_file = fx.dir.path().join("init.pid");
    let bundle = fx.bundle.to_str().expect("utf-8").to_owned();
    fx.edit_spec(|s| {
        s["linux"]["cgroupsPath"] = format!("{}/{id}", fx.cgroup).into();
        s["annotations"] = serde_json::json!({"org.example.note": "hello"});
    });
    fx.track_id(&id);
    fx.strata(&[
        "create",
        "--bundle",
        &bundle,
        "--pid-file",
        pid_file.to_str().expect("utf-8"),
        &id,
    ])
    .ok();
    let state = fx.state(&id);
    let pid = state["pid"].as_i64().expect("pid") as i32;
    fx.track_pid(pid);
    assert!(pid > 0);
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file"),
        pid.to_string()
    );
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["ociVersion"], "1.1.0");
    assert_eq!(state["bundle"], bundle.as_str());
    assert_eq!(state["rootfs"], format!("{bundle}/rootfs").as_str());
    assert_eq!(state["annotations"]["org.example.note"], "hello");
    assert_eq!(state["owner"], "");
    let created = state["created"].as_str().expect("created");
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    assert!(!fx.cgroup_dirs(&id).is_empty(), "cgroup exists");

    fx.strata(&["start", &id]).ok();
    assert_eq!(fx.status(&id), "running");
    fx.strata(&["start", &id])
        .fails_with("cannot start an already running container");
    fx.strata(&["delete", &id]).fails_with(&format!(
        "cannot delete container {id} that is not stopped: running"
    ));
    fx.strata(&["resume", &id])
        .fails_with(&format!("container \"{id}\" is not paused"));
    fx.strata(&["create", "--bundle", &bundle, &id])
        .fails_with(&format!("container with id exists: {id}"));

    // The init is PID 1 of its namespace and ignores SIGTERM; KILL works.
    fx.strata(&["kill", &id, "KILL"]).ok();
    fx.wait_status(&id, "stopped");
    let stopped = fx.state(&id);
    assert_eq!(stopped["pid"], 0);
    fx.strata(&["start", &id])
        .fails_with("cannot start a container that has stopped");
    fx.strata(&["kill", &id])
        .fails_with(&format!("container \"{id}\" is not running"));
    fx.strata(&["kill", "--all", &id, "9"]).ok();
    fx.strata(&["exec", &id, "true"])
        .fails_with("cannot exec in a stopped container");

    fx.strata(&["delete", &id]).ok();
    assert!(reap(pid, Duration::from_secs(10)));
    assert!(fx.cgroup_dirs(&id).is_empty());
    fx.strata(&["state", &id])
        .fails_with(&format!("container \"{id}\" does not exist"));
    fx.strata(&["delete", &id])
        .fails_with(&format!("container \"{id}\" does not exist"));
    fx.strata(&["delete", "--force", &id]).ok();
    fx.finish();
}

#[test]
fn pause_and_resume() {
    let fx = Fixture::new("pause", &["sleep", "100"]);
    let id = unique_id("pause");
    fx.start(&id);
    fx.strata(&["pause", &id]).ok();
    assert_eq!(fx.status(&id), "paused");
    let frozen = fx
        .cgroup_dirs(&id)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("freezer.state")).ok())
        .chain(
            fx.cgroup_dirs(&id)
                .iter()
                .filter_map(|d| std::fs::read_to_string(d.join("cgroup.freeze")).ok()),
        )
        .any(|s| s.trim() == "FROZEN" || s.trim() == "1");
    assert!(frozen, "the cgroup is frozen");
    fx.strata(&["exec", &id, "true"])
        .fails_with("cannot exec in a paused container");
    fx.strata(&["pause", &id])
        .fails_with(&format!("container \"{id}\" is not running"));
    fx.strata(&["resume", &id]).ok();
    assert_eq!(fx.status(&id), "running");
    let out = fx.strata(&["exec", &id, "echo", "thawed"]).ok();
    assert_eq!(out.stdout, "thawed\n");

    // SIGKILL reaches a paused container too.
    fx.strata(&["pause", &id]).ok();
    fx.strata(&["kill", &id, "SIGKILL"]).ok();
    fx.wait_status(&id, "stopped");
    fx.strata(&["delete", &id]).ok();
    fx.finish();
}

#[test]
fn delete_kills_created_and_forced_containers() {
    let fx = Fixture::new("delete", &["sleep", "100"]);
    let created = unique_id("created");
    let pid = fx.create(&created);
    // A created container is deleted without --force.
    fx.strata(&["delete", &created]).ok();
    assert!(reap(pid, Duration::from_secs(10)), "init of {created} gone");
    let running = unique_id("running");
    let pid = fx.start(&running);
    fx.strata(&["delete", "--force", &running]).ok();
    assert!(reap(pid, Duration::from_secs(10)), "init of {running} gone");
    assert!(fx.cgroup_dirs(&running).is_empty());
    fx.finish();
}

#[test]
fn failed_creates_leave_nothing() {
    let fx = Fixture::new("failed", &["/no/such/program"]);
    let id = unique_id("bad");
    fx.edit_spec(|s| s["linux"]["cgroupsPath"] = format!("{}/{id}", fx.cgroup).into());
    fx.track_id(&id);
    let bundle = fx.bundle.to_str().expect("utf-8").to_owned();
    let out = fx.strata(&["create", "--bundle", &bundle, &id]);
    out.fails_with("/no/such/program");
    assert!(!fx.root.join(&id).exists(), "no state directory");
    assert!(fx.cgroup_dirs(&id).is_empty(), "no cgroup");

    // A class whose backend is not available fails before anything is made.
    fx.edit_spec(|s| s["process"]["args"] = serde_json::json!(["true"]));
    let out = fx.strata(&["--class", "microvm", "create", "--bundle", &bundle, &id]);
    out.fails_with("backend \"microvm\" is not available in the strata command yet");
    fx.edit_spec(|s| {
        s["annotations"] = serde_json::json!({"io.strata.runtime-class": "interpose"});
    });
    let out = fx.strata(&["create", "--bundle", &bundle, &id]);
    out.fails_with("backend \"interpose\" is not available in the strata command yet");
    // --class wins over the annotation.
    fx.strata(&["--class", "native", "create", "--bundle", &bundle, &id])
        .ok();
    let pid = fx.state(&id)["pid"].as_i64().expect("pid") as i32;
    fx.track_pid(pid);
    fx.strata(&["delete", &id]).ok();
    assert!(!fx.root.join(&id).exists());

    // Missing bundle, terminal without a console socket.
    let out = fx.strata(&["create", "--bundle", "/nonexistent", &id]);
    out.fails_with("JSON specification file config.json not found");
    fx.edit_spec(|s| s["process"]["terminal"] = true.into());
    fx.strata(&["create", "--bundle", &bundle, &id])
        .fails_with("cannot allocate tty if strata will detach without setting console socket");
    fx.strata(&["create", "--bundle", &bundle, "bad/id"])
        .fails_with("invalid id format: bad/id");
    assert!(!fx.root.join(&id).exists());
    fx.finish();
}

#[test]
fn unknown_containers_and_signals() {
    let fx = Fixture::new("unknown", &["sleep", "100"]);
    for verb in ["start", "state", "pause", "resume", "ps", "delete"] {
        fx.strata(&[verb, "ghost"])
            .fails_with("container \"ghost\" does not exist");
    }
    fx.strata(&["kill", "ghost", "9"])
        .fails_with("container \"ghost\" does not exist");
    fx.strata(&["exec", "ghost", "true"])
        .fails_with("container \"ghost\" does not exist");
    let id = unique_id("sig");
    fx.start(&id);
    fx.strata(&["kill", &id, "NOPE"])
        .fails_with("unknown signal \"NOPE\"");
    // Signal 0 only checks that the container runs.
    fx.strata(&["kill", &id, "0"]).ok();
    fx.strata(&["kill", &id, "sigkill"]).ok();
    fx.wait_status(&id, "stopped");
    fx.strata(&["delete", &id]).ok();
    fx.finish();
}

#[test]
fn json_log_records_errors() {
    let fx = Fixture::new("log", &["true"]);
    let log = fx.dir.path().join("strata.log");
    let log_arg = log.to_str().expect("utf-8");
    let out = fx.strata(&["--log", log_arg, "--log-format", "json", "state", "ghost"]);
    out.fails_with("container \"ghost\" does not exist");
    let text = std::fs::read_to_string(&log).expect("log file");
    let line: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a line")).expect("a JSON line");
    assert_eq!(line["level"], "error");
    assert_eq!(line["msg"], "container \"ghost\" does not exist");
    assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    // Podman's way: global flags, --systemd-cgroup included, before the verb.
    let out = fx.strata(&[
        "--log",
        log_arg,
        "--log-format=json",
        "--systemd-cgroup",
        "delete",
        "--force",
        "ghost",
    ]);
    out.ok();
    fx.finish();
}
