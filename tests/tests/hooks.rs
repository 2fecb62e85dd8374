//! OCI hooks: every kind runs, in the lifecycle's order, with the
//! container's state; a failing hook fails Create and says why.
//!
//! Strata only: runc 1.1.5 runs `poststart` hooks during Create (before
//! `startContainer`) and gives `startContainer` hooks the pid inside the
//! container's PID namespace (1), so it cannot pass the ordering and pid
//! checks.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strata_e2e::{run_case, Containerd, STRATA};

const WAIT: Duration = Duration::from_secs(20);

/// Every hook kind, in the order the lifecycle runs them.
const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The search path hooks get; their environment is only what the spec says.
const HOOK_PATH: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    strata_e2e::command::write_executable(path, &format!("#!/bin/sh\n{body}")).unwrap();
}

/// A directory with the logging hook, at the same path on the host and (by
/// a bind mount) in the container, as `createContainer` and
/// `startContainer` hooks are looked up in the container's mount
/// namespace and, for `startContainer`, in its root.
///
/// The hook appends `<kind> <pid> <status>` from the state on its standard
/// input to `log`; `poststart` adds the name of the process with that pid,
/// which by then must be the container's program. The `startContainer`
/// hook is slow on purpose: the program may only be executed, and the
/// `poststart` hooks run, once it has finished.
fn hook_dir(c: &Containerd) -> PathBuf {
    let dir = c.dir().join("hooks");
    fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log");
    script(
        &dir.join("log.sh"),
        &format!(
            r#"state=$(cat)
pid=$(echo "$state" | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
status=$(echo "$state" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p')
extra=
case "$1" in
startContainer) sleep 1 ;;
poststart) extra=" $(cat /proc/$pid/comm)" ;;
esac
echo "$1 $pid $status$extra" >> {log}
"#,
            log = log.display()
        ),
    );
    dir
}

fn hook(path: &Path, args: &[&str]) -> Value {
    json!({ "path": path, "args": args, "env": [HOOK_PATH], "timeout": 30 })
}

/// A spec for `args` with the hook directory mounted at its own path.
fn spec_with_hooks(c: &Containerd, id: &str, args: &[&str], dir: &Path, hooks: Value) -> Value {
    let mut spec = c.spec_for(id, args).unwrap();
    spec["mounts"].as_array_mut().unwrap().push(
        json!({ "destination": dir, "type": "bind", "source": dir, "options": ["rbind", "rw"] }),
    );
    spec["hooks"] = hooks;
    spec
}

/// One hook of each kind runs, in order, each with the container's pid as
/// the host sees it and the state of that moment; `poststart` only after
/// the program was executed, `poststop` at Delete.
#[test]
fn all_kinds_in_order_strata() {
    run_case(STRATA, |c| {
        let dir = hook_dir(c);
        let log_sh = dir.join("log.sh");
        let mut hooks = serde_json::Map::new();
        for kind in KINDS {
            hooks.insert(kind.to_owned(), json!([hook(&log_sh, &["log.sh", kind])]));
        }
        let id = "hooked";
        let spec = spec_with_hooks(c, id, &["sleep", "1000"], &dir, Value::Object(hooks));
        c.run_detached_with_spec(STRATA, id, &spec).unwrap();
        let task = c.wait_status(id, "RUNNING", WAIT).unwrap();
        // Start has returned, so the program should run already; give a
        // late one time, so that the log shows every hook either way.
        let comm = format!("/proc/{}/comm", task.pid);
        let deadline = Instant::now() + WAIT;
        while fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep"
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(c.remove(id).unwrap(), 137);

        let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
        let lines: Vec<Vec<&str>> = log.lines().map(|l| l.split(' ').collect()).collect();
        let kinds: Vec<&str> = lines.iter().map(|l| l[0]).collect();
        assert_eq!(kinds, KINDS, "hooks ran out of order or not at all:\n{log}");
        let pid = task.pid.to_string();
        for l in &lines {
            assert_eq!(
                l.get(1).copied(),
                Some(pid.as_str()),
                "wrong pid (task pid {pid}):\n{log}"
            );
        }
        let statuses: Vec<&str> = lines
            .iter()
            .map(|l| l.get(2).copied().unwrap_or(""))
            .collect();
        assert_eq!(statuses[..3], ["creating"; 3], "{log}");
        assert!(["created", "running"].contains(&statuses[3]), "{log}");
        assert_eq!(statuses[4..], ["running", "stopped"], "{log}");
        assert_eq!(
            lines[4].get(3).copied(),
            Some("sleep"),
            "poststart ran before the program was executed:\n{log}"
        );
        fs::remove_dir_all(&dir).unwrap();
    });
}

/// A `createRuntime` hook that exits 3 saying "nope" fails Create with an
/// error naming the hook and carrying what it said; nothing is left behind
/// and the container's program never ran.
#[test]
fn failing_create_runtime_strata() {
    run_case(STRATA, |c| {
        let dir = hook_dir(c);
        let fail = dir.join("fail.sh");
        script(&fail, "echo nope >&2\nexit 3\n");
        let ran = dir.join("ran");
        let hooks = json!({
            "createRuntime": [hook(&fail, &["fail.sh"])],
            "poststart": [hook(&dir.join("log.sh"), &["log.sh", "poststart"])],
        });
        let id = "hookfail";
        let spec = spec_with_hooks(
            c,
            id,
            &["sh", "-c", &format!("touch {}", ran.display())],
            &dir,
            hooks,
        );
        let out = c.run_with_spec(STRATA, id, &spec).unwrap();
        assert_ne!(out.code, 0, "{out}");
        assert!(out.stderr.contains("createRuntime"), "{out}");
        assert!(out.stderr.contains(&fail.display().to_string()), "{out}");
        assert!(out.stderr.contains("nope"), "{out}");
        assert!(!ran.exists(), "the program ran");
        assert!(!dir.join("log").exists(), "a later hook ran");
        assert!(c.containers().unwrap().is_empty());
        assert!(c.tasks().unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    });
}
