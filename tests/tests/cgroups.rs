//! The container's cgroup as the kernel sees it: limits written where they
//! belong, the device list enforced, Pause and Resume through the freezer,
//! statistics (`ctr task metrics` and the shim's Stats), OOM events, Update
//! over the shim's own ttrpc socket, the systemd form of `cgroupsPath`, and
//! creates that fail without leaving a cgroup (or anything else) behind.
//!
//! The host here uses cgroup v1: each controller is a hierarchy of its own
//! under `/sys/fs/cgroup/<controller>`, and a container's cgroup is its
//! `linux.cgroupsPath` (`/<namespace>/<id>` for `ctr`) below each of them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{StatsRequest, UpdateTaskRequest};
use containerd_shim_protos::cgroups::metrics::Metrics;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim_sync::{Client, TaskClient};
use containerd_shim_protos::ttrpc::context;
use serde_json::{json, Value};
use strata_e2e::containerd::{is_strata, CGROUP_ROOT};
use strata_e2e::ctr::metric;
use strata_e2e::{
    assert_code, procfs, run_case, runtime_tests, CmdOutput, Containerd, RunOptions, STRATA,
};

const WAIT: Duration = Duration::from_secs(20);

const MIB: i64 = 1 << 20;

/// The type URL containerd sends the resources of an Update under.
const RESOURCES_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// The type URL of the cgroup v1 statistics a Stats answer carries.
const V1_METRICS_TYPE: &str = "io.containerd.cgroups.v1.Metrics";

/// The container's cgroup directory in the v1 hierarchy of `controller`.
fn cgroup_dir(c: &Containerd, controller: &str, id: &str) -> PathBuf {
    Path::new(CGROUP_ROOT)
        .join(controller)
        .join(c.namespace())
        .join(id)
}

/// A cgroup file, trimmed.
fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// A file of the container's cgroup in the hierarchy of `controller`.
fn cg_file(c: &Containerd, controller: &str, id: &str, file: &str) -> String {
    read_trimmed(&cgroup_dir(c, controller, id).join(file))
}

/// The PIDs in a cgroup directory's `cgroup.procs`.
fn procs(dir: &Path) -> Vec<u32> {
    read_trimmed(&dir.join("cgroup.procs"))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Which file sets a block IO weight on this host, found by making a
/// scratch cgroup in the blkio hierarchy (the weight files are only found
/// below its root) and looking: `blkio.weight` (CFQ) or `blkio.bfq.weight`
/// (BFQ); `None` if neither exists.
fn blkio_weight_file() -> Option<&'static str> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let probe = Path::new(CGROUP_ROOT)
        .join("blkio")
        .join(format!("se2e-probe-{}-{n}", std::process::id()));
    fs::create_dir(&probe).ok()?;
    let found = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| probe.join(f).exists());
    fs::remove_dir(&probe).unwrap();
    found
}

/// Rules for `linux.resources.devices` as containerd builds them: deny
/// everything, then allow the devices every container gets (the null,
/// zero, full, random and urandom devices, ttys, the console, ptmx and the
/// pts devices). `/dev/null` (`c 1:3`) gets `null_access`.
fn device_rules(null_access: &str) -> Value {
    let allow = |major: i64, minor: i64, access: &str| {
        json!({
            "allow": true, "type": "c", "major": major, "minor": minor, "access": access
        })
    };
    json!([
        { "allow": false, "access": "rwm" },
        allow(1, 3, null_access),
        allow(1, 5, "rwm"),
        allow(1, 7, "rwm"),
        allow(1, 8, "rwm"),
        allow(1, 9, "rwm"),
        allow(5, 0, "rwm"),
        allow(5, 1, "rwm"),
        allow(5, 2, "rwm"),
        allow(136, -1, "rwm"),
    ])
}

/// [`Containerd::spec_for`] with the device list of [`device_rules`]
/// (every default device fully allowed) in place of its bare deny-all.
fn base_spec(c: &Containerd, id: &str, args: &[&str]) -> Value {
    let mut spec = c.spec_for(id, args).unwrap();
    spec["linux"]["resources"]["devices"] = device_rules("rwm");
    spec
}

/// The cgroup mount that shows a container its own cgroups.
fn cgroup_mount() -> Value {
    json!({
        "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
        "options": ["ro", "nosuid", "noexec", "nodev"]
    })
}

/// Memory limit and reservation, CPU shares, quota, period and cpuset,
/// the pids limit and (where the host has a weight file) the block IO
/// weight from the spec are in the container's cgroup files on the host,
/// and the same values show through the container's own `/sys/fs/cgroup`
/// and its allowed CPU list.
fn limits_reach_the_kernel(c: &Containerd) {
    let id = "limits";
    let mut spec = base_spec(c, id, &["sleep", "1000"]);
    spec["mounts"].as_array_mut().unwrap().push(cgroup_mount());
    let weight = blkio_weight_file();
    let mut resources = json!({
        "devices": device_rules("rwm"),
        "memory": { "limit": 64 * MIB, "reservation": 32 * MIB },
        "cpu": { "shares": 512, "quota": 50_000, "period": 100_000, "cpus": "0", "mems": "0" },
        "pids": { "limit": 64 },
    });
    match weight {
        Some(_) => resources["blockIO"] = json!({ "weight": 500 }),
        None => eprintln!(
            "not checking blockIO.weight: this kernel's blkio hierarchy has neither \
             blkio.weight nor blkio.bfq.weight"
        ),
    }
    spec["linux"]["resources"] = resources;
    c.run_detached_with_spec(c.runtime(), id, &spec).unwrap();
    let task = c.wait_status(id, "RUNNING", WAIT).unwrap();

    let mut want = vec![
        ("memory", "memory.limit_in_bytes", (64 * MIB).to_string()),
        (
            "memory",
            "memory.soft_limit_in_bytes",
            (32 * MIB).to_string(),
        ),
        ("cpu", "cpu.shares", "512".to_owned()),
        ("cpu", "cpu.cfs_quota_us", "50000".to_owned()),
        ("cpu", "cpu.cfs_period_us", "100000".to_owned()),
        ("cpuset", "cpuset.cpus", "0".to_owned()),
        ("cpuset", "cpuset.mems", "0".to_owned()),
        ("pids", "pids.max", "64".to_owned()),
    ];
    if let Some(file) = weight {
        want.push(("blkio", file, "500".to_owned()));
    }
    for (controller, file, value) in &want {
        let got = cg_file(c, controller, id, file);
        // blkio.bfq.weight reads "default 500".
        let got = got.strip_prefix("default ").unwrap_or(&got);
        assert_eq!(got, value, "{controller}/{file}");
    }
    for controller in ["memory", "cpu", "cpuset", "pids", "freezer", "devices"] {
        let dir = cgroup_dir(c, controller, id);
        assert!(
            procs(&dir).contains(&task.pid),
            "the init (pid {}) is not in {}",
            task.pid,
            dir.display()
        );
    }

    // Inside: the cgroup mount shows the container's own cgroup, and the
    // cpuset is the allowed CPU list.
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
                  /sys/fs/cgroup/memory/memory.soft_limit_in_bytes \
                  /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us \
                  /sys/fs/cgroup/pids/pids.max; grep Cpus_allowed_list /proc/self/status";
    let out = c.exec(id, "inside", &["sh", "-c", script]).unwrap();
    assert_code(&out, 0);
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            (64 * MIB).to_string(),
            (32 * MIB).to_string(),
            "512".into(),
            "50000".into(),
            "64".into(),
            "Cpus_allowed_list: 0".into(),
        ],
        "{out}"
    );

    assert_eq!(c.remove(id).unwrap(), 137);
    for (controller, ..) in &want {
        assert!(!cgroup_dir(c, controller, id).exists());
    }
}

/// Runs `script` with `sh -c` as an exec'd process of container `id`.
fn sh(c: &Containerd, id: &str, exec_id: &str, script: &str) -> CmdOutput {
    c.exec(id, exec_id, &["sh", "-c", script]).unwrap()
}

/// The device list of containerd's default spec (`ctr oci spec`) is a
/// bare deny-all; the runtime still supplies the default devices and the
/// container can use them: write `/dev/null`, read `/dev/zero`.
fn bare_deny_all_devices(c: &Containerd) {
    let id = "baredeny";
    let spec = c
        .spec_for(
            id,
            &[
                "sh",
                "-c",
                "echo x > /dev/null && head -c 1 /dev/zero | wc -c",
            ],
        )
        .unwrap();
    assert_eq!(
        spec["linux"]["resources"]["devices"],
        json!([{ "allow": false, "access": "rwm" }])
    );
    let out = c.run_with_spec(c.runtime(), id, &spec).unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout.trim(), "1", "{out}");
}

/// A device the spec adds (`/dev/kmsg`, `c 1:11`) whose rule allows only
/// reading and mknod: the node is there, opening it for writing fails with
/// EPERM, while the default devices are fully usable; the cgroup's
/// `devices.list` holds the spec's rule as written and no wildcard. (The
/// probe opens `/dev/kmsg` for writing without writing, so nothing reaches
/// the host's kernel log if the rule is not enforced.)
fn device_rules_enforced(c: &Containerd) {
    let id = "devices";
    let mut spec = base_spec(c, id, &["sleep", "1000"]);
    spec["linux"]["devices"] = json!([{
        "path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11,
        "fileMode": 0o666, "uid": 0, "gid": 0
    }]);
    spec["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "allow": true, "type": "c", "major": 1, "minor": 11, "access": "rm" }));
    c.run_detached_with_spec(c.runtime(), id, &spec).unwrap();
    c.wait_status(id, "RUNNING", WAIT).unwrap();

    let out = sh(
        c,
        id,
        "probe",
        "test -c /dev/kmsg; echo node=$?; true > /dev/kmsg; echo kmsg=$?; \
         echo x > /dev/null; echo null=$?; head -c 1 /dev/zero | wc -c",
    );
    let list = cg_file(c, "devices", id, "devices.list");
    assert_code(&out, 0);
    let got: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(
        got,
        ["node=0", "kmsg=1", "null=0", "1"],
        "{out}\ndevices.list:\n{list}"
    );
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
    let lines: Vec<&str> = list.lines().collect();
    for want in ["c 1:11 rm", "c 1:3 rwm", "c 1:5 rwm"] {
        assert!(
            lines.contains(&want),
            "no {want:?} in devices.list:\n{list}"
        );
    }
    assert!(!lines.contains(&"c 1:11 rwm"), "devices.list:\n{list}");
    assert!(!lines.contains(&"a *:* rwm"), "devices.list:\n{list}");

    assert_eq!(c.remove(id).unwrap(), 137);
}

/// The default devices stay usable whatever the spec's device list says:
/// with deny-all, the default devices allowed and `/dev/null` (`c 1:3`)
/// allowed for reading only, writing to `/dev/null` still works and
/// `devices.list` has `c 1:3 rwm`, as the runtime's own rules for the
/// default devices (and `c *:* m`, `b *:* m`) come after the spec's. That
/// is runc's behaviour (1.1.5), so a deny for `/dev/null` written in a spec
/// never takes effect; [`device_rules_enforced`] checks a deny where the
/// spec's rule does count.
fn default_devices_stay_usable(c: &Containerd) {
    let id = "nullro";
    let mut spec = c.spec_for(id, &["sleep", "1000"]).unwrap();
    spec["linux"]["resources"]["devices"] = device_rules("r");
    c.run_detached_with_spec(c.runtime(), id, &spec).unwrap();
    c.wait_status(id, "RUNNING", WAIT).unwrap();

    let out = sh(
        c,
        id,
        "probe",
        "echo x > /dev/null; echo write=$?; cat /dev/null; echo read=$?; \
         head -c 1 /dev/zero | wc -c",
    );
    assert_code(&out, 0);
    let got: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(got, ["write=0", "read=0", "1"], "{out}");
    let list = cg_file(c, "devices", id, "devices.list");
    let lines: Vec<&str> = list.lines().collect();
    for want in ["c 1:3 rwm", "c *:* m", "b *:* m"] {
        assert!(
            lines.contains(&want),
            "no {want:?} in devices.list:\n{list}"
        );
    }

    assert_eq!(c.remove(id).unwrap(), 137);
}

/// What the container's init last wrote to `/tmp/c`, read through its root
/// on the host: the counter it bumps as fast as it can (empty while the
/// shell is between truncating the file and writing it).
fn counter_text(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/root/tmp/c")).unwrap_or_default()
}

/// The counter; `None` while there is none.
fn counter(pid: u32) -> Option<u64> {
    counter_text(pid).trim().parse().ok()
}

/// Polls until the counter exceeds `above`.
fn wait_counter_above(pid: u32, above: u64) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(n) = counter(pid).filter(|&n| n > above) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "the counter never passed {above}: {:?}",
            counter(pid)
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Pause freezes the container (PAUSED, the freezer FROZEN, a counter
/// loop stands still) and publishes `/tasks/paused`; Resume thaws it
/// (RUNNING, THAWED, the counter moves) and publishes `/tasks/resumed`.
/// Pausing a paused container and resuming a running one fail and change
/// nothing. A paused container can be killed with SIGKILL (it exits 137 and
/// nothing stays frozen) and deleted.
fn pause_resume(c: &Containerd) {
    let id = "pausing";
    let watcher = c.watch_events().unwrap();
    let script = "i=0; while true; do i=$((i+1)); echo $i > /tmp/c; done";
    c.run_detached(&RunOptions::new(id, ["sh", "-c", script]))
        .unwrap();
    let task = c.wait_status(id, "RUNNING", WAIT).unwrap();
    let freezer = |c: &Containerd| cg_file(c, "freezer", id, "freezer.state");
    assert_eq!(freezer(c), "THAWED");
    let running_at = wait_counter_above(task.pid, 0);

    c.ctr(&["tasks", "pause", id]).unwrap().ok().unwrap();
    assert_eq!(c.task(id).unwrap().unwrap().status, "PAUSED");
    assert_eq!(freezer(c), "FROZEN");
    let frozen = counter_text(task.pid);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        counter_text(task.pid),
        frozen,
        "the counter moved while paused"
    );
    let frozen_at = frozen.trim().parse().unwrap_or(running_at);
    watcher
        .wait_for(WAIT, |e| {
            e.topic == "/tasks/paused" && e.container_id() == id
        })
        .unwrap();

    let again = c.ctr(&["tasks", "pause", id]).unwrap();
    assert_ne!(again.code, 0, "pausing a paused container: {again}");
    if is_strata(c.runtime()) {
        assert!(
            again.stderr.contains("failed precondition"),
            "not a FailedPrecondition error: {again}"
        );
    }
    assert_eq!(c.task(id).unwrap().unwrap().status, "PAUSED");
    assert_eq!(freezer(c), "FROZEN");

    c.ctr(&["tasks", "resume", id]).unwrap().ok().unwrap();
    assert_eq!(c.task(id).unwrap().unwrap().status, "RUNNING");
    assert_eq!(freezer(c), "THAWED");
    wait_counter_above(task.pid, frozen_at);
    watcher
        .wait_for(WAIT, |e| {
            e.topic == "/tasks/resumed" && e.container_id() == id
        })
        .unwrap();

    let again = c.ctr(&["tasks", "resume", id]).unwrap();
    assert_ne!(again.code, 0, "resuming a running container: {again}");
    if is_strata(c.runtime()) {
        assert!(
            again.stderr.contains("failed precondition"),
            "not a FailedPrecondition error: {again}"
        );
    }
    assert_eq!(c.task(id).unwrap().unwrap().status, "RUNNING");

    // Killing a paused container.
    c.ctr(&["tasks", "pause", id]).unwrap().ok().unwrap();
    assert_eq!(freezer(c), "FROZEN");
    c.kill(id, Some("SIGKILL"), false).unwrap().ok().unwrap();
    if let Err(e) = c.wait_status(id, "STOPPED", WAIT) {
        panic!(
            "SIGKILL did not end the paused container: {e:#}; freezer.state is {}, \
             the init (pid {}) is {}",
            freezer(c),
            task.pid,
            procfs::read_proc(task.pid as i32)
                .map(|p| format!("in state {}", p.state))
                .unwrap_or_else(|| "gone".into())
        );
    }
    assert!(!procfs::alive(task.pid as i32));
    assert_eq!(freezer(c), "THAWED");
    assert_eq!(c.delete_task(id).unwrap(), 137);
    c.delete_container(id).unwrap();
    let paused = watcher
        .stop()
        .iter()
        .filter(|e| e.topic == "/tasks/paused" && e.container_id() == id)
        .count();
    assert_eq!(paused, 2, "expected two /tasks/paused events");
}

/// `ctr task metrics` on a container that allocated memory and burned CPU
/// shows memory and CPU use, at least one process and the memory limit it
/// was created with, in the table and in the JSON format.
fn metrics(c: &Containerd) {
    let id = "metered";
    let limit = 64 * MIB;
    let script = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; \
                  head -c 8m /dev/zero > /tmp/blob; touch /tmp/ready; sleep 1000";
    c.run_detached(&RunOptions::new(id, ["sh", "-c", script]).memory_limit(limit as u64))
        .unwrap();
    c.wait_status(id, "RUNNING", WAIT).unwrap();
    c.wait_exec_ok(id, &["test", "-e", "/tmp/ready"], WAIT)
        .unwrap();

    let out = c.ctr(&["tasks", "metrics", id]).unwrap().ok().unwrap();
    let value = |name: &str| -> u64 {
        metric(&out, name).unwrap_or_else(|| panic!("no number {name} in {out}"))
    };
    assert!(value("memory.usage_in_bytes") > 0, "{out}");
    assert_eq!(value("memory.limit_in_bytes"), limit as u64, "{out}");
    assert!(value("cpuacct.usage") > 0, "{out}");
    assert!(value("pids.current") >= 1, "{out}");

    let out = c
        .ctr(&["tasks", "metrics", "--format", "json", id])
        .unwrap()
        .ok()
        .unwrap();
    let m: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let num = |v: &Value| v.as_u64().unwrap_or(0);
    assert!(num(&m["memory"]["usage"]["usage"]) > 0, "{out}");
    assert_eq!(num(&m["memory"]["usage"]["limit"]), limit as u64, "{out}");
    assert!(num(&m["cpu"]["usage"]["total"]) > 0, "{out}");
    assert!(num(&m["pids"]["current"]) >= 1, "{out}");

    assert_eq!(c.remove(id).unwrap(), 137);
}

/// With a 32 MiB limit, a child that needs 64 MiB is OOM-killed: the shim
/// publishes `/tasks/oom` for the container, the init goes on (`after`)
/// and its exit is reported. The child marks itself the OOM killer's first
/// choice (raising `oom_score_adj` needs no privilege), so the victim is
/// never the init shell.
fn oom_event(c: &Containerd) {
    let id = "oomer";
    let watcher = c.watch_events().unwrap();
    let out = c
        .run(
            &RunOptions::new(
                id,
                [
                    "sh",
                    "-c",
                    "sh -c 'echo 1000 > /proc/self/oom_score_adj; head -c 64m /dev/zero | tail > /dev/null'; echo after",
                ],
            )
            .memory_limit(32 << 20),
        )
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout.trim(), "after", "{out}");
    watcher
        .wait_for(WAIT, |e| e.topic == "/tasks/oom" && e.container_id() == id)
        .unwrap();
    watcher
        .wait_for(WAIT, |e| e.topic == "/tasks/exit" && e.container_id() == id)
        .unwrap();
    watcher
        .wait_for(WAIT, |e| {
            e.topic == "/containers/delete" && e.container_id() == id
        })
        .unwrap();
    drop(watcher);
}

runtime_tests!(
    limits_reach_the_kernel,
    bare_deny_all_devices,
    device_rules_enforced,
    default_devices_stay_usable,
    pause_resume,
    metrics,
    oom_event
);

/// A ttrpc client of the shim serving container `id`, connected through
/// the address the shim gave containerd (the `address` file of the bundle).
fn shim_client(c: &Containerd, id: &str) -> TaskClient {
    let file = c.task_dir().join(id).join("address");
    let address = read_trimmed(&file);
    let client = Client::connect(&address).unwrap_or_else(|e| panic!("connecting {address}: {e}"));
    TaskClient::new(client)
}

fn ctx() -> context::Context {
    context::with_timeout(WAIT.as_nanos() as i64)
}

/// Sends Update with `resources` (OCI `LinuxResources` as JSON, as
/// containerd does).
fn update(
    client: &TaskClient,
    id: &str,
    resources: Value,
) -> Result<(), containerd_shim_protos::ttrpc::Error> {
    let req = UpdateTaskRequest {
        id: id.to_owned(),
        resources: MessageField::some(Any {
            type_url: RESOURCES_TYPE.to_owned(),
            value: serde_json::to_vec(&resources).unwrap(),
            ..Default::default()
        }),
        ..Default::default()
    };
    client.update(ctx(), &req).map(|_| ())
}

/// Sends Stats and decodes the cgroup v1 metrics.
fn stats(client: &TaskClient, id: &str) -> Metrics {
    let req = StatsRequest {
        id: id.to_owned(),
        ..Default::default()
    };
    let resp = client.stats(ctx(), &req).unwrap();
    let any = resp.stats.as_ref().expect("Stats answered without stats");
    assert_eq!(any.type_url, V1_METRICS_TYPE);
    Metrics::parse_from_bytes(&any.value).unwrap()
}

/// Update over the shim's socket (`ctr` 1.6 has no command for it): the
/// memory limit goes up and down and the pids limit changes in the host's
/// cgroup files; an invalid update (a memory limit of -5) fails naming the
/// field and changes nothing. Stats over the same connection reports the
/// current limit.
#[test]
fn update_over_ttrpc_strata() {
    run_case(STRATA, |c| {
        let id = "updated";
        c.run_detached(&RunOptions::new(id, ["sleep", "1000"]).memory_limit(64 << 20))
            .unwrap();
        c.wait_status(id, "RUNNING", WAIT).unwrap();
        let mem = |c: &Containerd| cg_file(c, "memory", id, "memory.limit_in_bytes");
        let pids = |c: &Containerd| cg_file(c, "pids", id, "pids.max");
        assert_eq!(mem(c), (64 * MIB).to_string());
        assert_eq!(pids(c), "max");

        let client = shim_client(c, id);
        update(
            &client,
            id,
            json!({ "memory": { "limit": 128 * MIB }, "pids": { "limit": 100 } }),
        )
        .unwrap();
        assert_eq!(mem(c), (128 * MIB).to_string());
        assert_eq!(pids(c), "100");

        update(&client, id, json!({ "memory": { "limit": 48 * MIB } })).unwrap();
        assert_eq!(mem(c), (48 * MIB).to_string());
        assert_eq!(pids(c), "100");

        let err = update(
            &client,
            id,
            json!({ "memory": { "limit": -5 }, "pids": { "limit": 7 } }),
        )
        .unwrap_err();
        let text = format!("{err:?}");
        assert!(
            text.contains("linux.resources.memory.limit"),
            "the error does not name the field: {text}"
        );
        assert_eq!(mem(c), (48 * MIB).to_string());
        assert_eq!(pids(c), "100");

        let m = stats(&client, id);
        let usage = m.memory.usage.as_ref().expect("no memory usage");
        assert_eq!(usage.limit, (48 * MIB) as u64, "{m:?}");
        assert!(usage.usage > 0, "{m:?}");
        assert!(m.pids.current >= 1, "{m:?}");
        assert_eq!(m.pids.limit, 100, "{m:?}");
        drop(client);

        assert_eq!(c.remove(id).unwrap(), 137);
    });
}

/// Removes what the systemd-form test put into the hierarchies, also when
/// it fails: the scope directories, and `system.slice` where the test made
/// it.
struct ScopeCleanup {
    scope: String,
    made_slice: Vec<PathBuf>,
}

impl Drop for ScopeCleanup {
    fn drop(&mut self) {
        let Ok(hierarchies) = fs::read_dir(CGROUP_ROOT) else {
            return;
        };
        for h in hierarchies.flatten() {
            let dir = h.path().join("system.slice").join(&self.scope);
            for _ in 0..50 {
                if !dir.exists() || fs::remove_dir(&dir).is_ok() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        for slice in &self.made_slice {
            let _ = fs::remove_dir(slice);
        }
    }
}

/// A `cgroupsPath` in the systemd form `slice:prefix:name` puts the
/// container in `<slice>/<prefix>-<name>.scope` of every hierarchy (no
/// systemd involved), and Delete removes those directories.
#[test]
fn systemd_cgroups_path_strata() {
    run_case(STRATA, |c| {
        let id = format!("sysd-{}", std::process::id());
        let scope = format!("strata-test-{id}.scope");
        let controllers = [
            "memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices",
        ];
        let made_slice = fs::read_dir(CGROUP_ROOT)
            .unwrap()
            .flatten()
            .map(|h| h.path().join("system.slice"))
            .filter(|s| !s.exists())
            .collect();
        let _cleanup = ScopeCleanup {
            scope: scope.clone(),
            made_slice,
        };

        let mut spec = base_spec(c, &id, &["sleep", "1000"]);
        spec["linux"]["cgroupsPath"] = json!(format!("system.slice:strata-test:{id}"));
        spec["linux"]["resources"]["pids"] = json!({ "limit": 33 });
        c.run_detached_with_spec(STRATA, &id, &spec).unwrap();
        let task = c.wait_status(&id, "RUNNING", WAIT).unwrap();
        for controller in controllers {
            let dir = Path::new(CGROUP_ROOT)
                .join(controller)
                .join("system.slice")
                .join(&scope);
            assert!(
                procs(&dir).contains(&task.pid),
                "the init (pid {}) is not in {}",
                task.pid,
                dir.display()
            );
            assert!(!cgroup_dir(c, controller, &id).exists());
        }
        let pids_dir = Path::new(CGROUP_ROOT)
            .join("pids/system.slice")
            .join(&scope);
        assert_eq!(read_trimmed(&pids_dir.join("pids.max")), "33");

        assert_eq!(c.remove(&id).unwrap(), 137);
        let deadline = Instant::now() + WAIT;
        for controller in controllers {
            let dir = Path::new(CGROUP_ROOT)
                .join(controller)
                .join("system.slice")
                .join(&scope);
            while dir.exists() {
                assert!(
                    Instant::now() < deadline,
                    "{} is still there after delete",
                    dir.display()
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
    });
}

/// Runs `spec` (which fails Create) in the foreground and checks that it
/// failed, that nothing of the container is left (process, mount, cgroup,
/// runc state, socket, fifo, bundle, container record), and returns the
/// output.
fn failed_create(c: &Containerd, id: &str, spec: &Value) -> CmdOutput {
    let before = c.snapshot();
    let out = c.run_with_spec(c.runtime(), id, spec).unwrap();
    assert_ne!(out.code, 0, "create should have failed: {out}");
    c.assert_no_leftovers(&before);
    assert!(
        !c.task_dir().join(id).exists(),
        "the bundle of {id} is left"
    );
    for controller in ["memory", "pids", "cpu", "freezer", "devices"] {
        assert!(!cgroup_dir(c, controller, id).exists());
    }
    out
}

/// Creates that fail inside the container's setup: a bind mount whose
/// source does not exist, a uid the user namespace does not map, and a
/// program that is not on `PATH`. Each fails, says why (Strata names the
/// mount and its source, and the uid; both runtimes give Go's message for
/// the missing program), and leaves nothing behind.
fn failed_creates(c: &Containerd) {
    let strata = is_strata(c.runtime());

    // A bind mount of a missing source.
    let id = "nosource";
    let missing = c.dir().join("no-such-source");
    let mut spec = base_spec(c, id, &["true"]);
    let mounts = spec["mounts"].as_array_mut().unwrap();
    mounts.push(json!({
        "destination": "/mnt/x", "type": "bind", "source": missing, "options": ["rbind", "ro"]
    }));
    let index = mounts.len() - 1;
    let out = failed_create(c, id, &spec);
    let source = missing.display().to_string();
    assert!(out.stderr.contains(&source), "{out}");
    if strata {
        assert!(out.stderr.contains(&format!("mounts[{index}]")), "{out}");
    }

    // A uid the user namespace does not map: only uid 0 is mapped, to an
    // unprivileged host id (the gids are all mapped, devpts needs gid 5). The rootfs sits in a directory of
    // its own that the mapped root can reach (the fixture's is 0700).
    let id = "badid";
    let dir = tempfile::Builder::new()
        .prefix("se2e-cgroups-")
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let rootfs = dir.path().join("rootfs");
    strata_e2e::image::unpack_rootfs(&rootfs).unwrap();
    let mut spec = base_spec(c, id, &["true"]);
    spec["root"]["path"] = json!(rootfs);
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "user" }));
    spec["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": 100_000, "size": 1 }]);
    spec["linux"]["gidMappings"] = json!([{ "containerID": 0, "hostID": 100_000, "size": 65_536 }]);
    spec["process"]["user"] = json!({ "uid": 5000, "gid": 0 });
    let out = failed_create(c, id, &spec);
    if strata {
        assert!(out.stderr.contains("uid 5000"), "{out}");
    }
    assert!(procfs::mounts_under(dir.path()).is_empty());
    drop(dir);

    // A program that is not there.
    let id = "noprog";
    let spec = base_spec(c, id, &["nope"]);
    let out = failed_create(c, id, &spec);
    assert!(
        out.stderr
            .contains(r#"exec: "nope": executable file not found in $PATH"#),
        "{out}"
    );
}

runtime_tests!(failed_creates);
