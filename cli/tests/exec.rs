//! `strata exec`: output and exit codes, the flags that shape the process,
//! `--process` files, detached processes with pid files, and `ps`.

mod common;

use std::time::Duration;

use common::{reap, unique_id, Fixture, COMMAND_TIMEOUT};

#[test]
fn output_exit_code_and_flags() {
    let fx = Fixture::new("exec", &["sleep", "100"]);
    let id = unique_id("exec");
    fx.start(&id);
    let out = fx.strata(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo inside; echo oops >&2; exit 3",
    ]);
    assert_eq!(out.code, 3, "{}", out.describe());
    assert_eq!(out.stdout, "inside\n");
    assert_eq!(out.stderr, "oops\n");

    let out = fx
        .strata(&[
            "exec",
            "--cwd",
            "/tmp",
            "-e",
            "GREETING=hi",
            "--user",
            "65534:65534",
            &id,
            "sh",
            "-c",
            "echo $(pwd) $GREETING $(id -u):$(id -g)",
        ])
        .ok();
    assert_eq!(out.stdout, "/tmp hi 65534:65534\n");

    fx.strata(&["exec", &id, "/no/such/program"])
        .fails_with("/no/such/program");
    fx.strata(&["exec", &id])
        .fails_with("exec args cannot be empty");
    fx.strata(&["delete", "--force", &id]).ok();
    fx.finish();
}

#[test]
fn process_file_and_detached_exec() {
    let fx = Fixture::new("execd", &["sleep", "100"]);
    let id = unique_id("execd");
    let init = fx.start(&id);
    let process = fx.dir.path().join("process.json");
    std::fs::write(
        &process,
        serde_json::to_vec(&serde_json::json!({
            "args": ["sh", "-c", "echo from-file $X"],
            "env": ["PATH=/bin", "X=42"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
        }))
        .expect("encode"),
    )
    .expect("write process.json");
    let out = fx
        .strata(&["exec", "--process", process.to_str().expect("utf-8"), &id])
        .ok();
    assert_eq!(out.stdout, "from-file 42\n");

    let pid_file = fx.dir.path().join("exec.pid");
    fx.strata(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().expect("utf-8"),
        &id,
        "sleep",
        "77",
    ])
    .ok();
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .parse()
        .expect("pid");
    fx.track_pid(pid);
    let pids = fx.strata(&["ps", "--format", "json", &id]).ok().json();
    let pids: Vec<i64> = pids
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p.as_i64().expect("number"))
        .collect();
    assert!(pids.contains(&i64::from(init)), "{pids:?} has the init");
    assert!(pids.contains(&i64::from(pid)), "{pids:?} has the exec");
    let table = fx.strata(&["ps", &id]).ok().stdout;
    let header = table.lines().next().expect("header");
    assert!(header.contains("PID"), "{table}");
    assert!(table.contains("sleep 77"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
    fx.strata(&["delete", "--force", &id]).ok();
    assert!(
        reap(pid, Duration::from_secs(10)),
        "the exec'd process died too"
    );
    fx.finish();
}

#[test]
fn preserved_descriptors_reach_the_process() {
    let fx = Fixture::new("fds", &["sleep", "100"]);
    let id = unique_id("fds");
    fx.start(&id);
    let path = fx.dir.path().join("fd3.txt");
    let file = std::fs::File::create(&path).expect("create");
    let args = [
        "exec",
        "--preserve-fds",
        "1",
        &id,
        "sh",
        "-c",
        "echo kept >&3",
    ];
    let mut cmd = fx.command(&args);
    let file = std::os::fd::OwnedFd::from(file);
    strata_backend::child::pass_fd(&mut cmd, &file, 3);
    fx.spawn_command(cmd, &args).wait(COMMAND_TIMEOUT).ok();
    drop(file);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "kept\n");
    fx.strata(&["delete", "--force", &id]).ok();
    fx.finish();
}
