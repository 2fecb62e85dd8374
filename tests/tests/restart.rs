//! containerd restarts while containers run: the shims outlive it, it
//! reconnects to them, a container that exited while it was away keeps its
//! exit status, and the one still running can be exec'd into and killed.
//! On the microvm class the tasks' processes are their VMs' monitors.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use strata_e2e::{assert_code, procfs, runtime_tests, Containerd, RunOptions};

const WAIT: Duration = Duration::from_secs(20);

/// When a microVM's exiting container ends, counted from when it was seen
/// running. Its guest has a disk of its own, so the host cannot release it
/// through its root filesystem; it ends on time instead.
const VM_EXIT_AFTER: Duration = Duration::from_secs(10);

/// How long a microVM's agent gets to report the exit to its shim.
const VM_EXIT_MARGIN: Duration = Duration::from_secs(4);

/// `(pid, start time)` of the shim server of container `id`.
fn shim_key(c: &Containerd, id: &str) -> (i32, u64) {
    c.shim_server(id)
        .unwrap_or_else(|| panic!("no shim server for {id} among {:?}", c.our_pids()))
        .key()
}

/// Asserts that the processes `keys` (`(pid, start time)`) are all still
/// alive: the same processes, not PIDs reused.
#[track_caller]
fn assert_alive(what: &str, keys: &[(&str, (i32, u64))]) {
    for (name, (pid, start)) in keys {
        let p = procfs::read_proc(*pid);
        assert!(
            p.as_ref()
                .is_some_and(|p| !p.is_zombie() && p.start == *start),
            "{what}: the process of {name} (pid {pid}) is gone: {p:?}"
        );
    }
}

fn containerd_restart(c: &Containerd) {
    let (long, short) = ("survivor", "exiter");
    let vm = c.runtime() == strata_e2e::STRATA_MICROVM;
    c.run_detached(&RunOptions::new(long, ["sleep", "1000"]))
        .unwrap();
    // The second container exits with 5 once the host creates `/release`
    // in its root filesystem, which the test does while containerd is down:
    // a fixed `sleep` would race with how long containerd takes to stop. In
    // a microVM it exits on time, and the test checks that containerd was
    // down by then.
    let exiter = if vm {
        format!("sleep {}; exit 5", VM_EXIT_AFTER.as_secs())
    } else {
        "while [ ! -e /release ]; do sleep 0.1; done; exit 5".to_owned()
    };
    // Its exit falls between these two instants plus `VM_EXIT_AFTER`.
    let short_requested = Instant::now();
    c.run_detached(&RunOptions::new(short, ["sh", "-c", &exiter]))
        .unwrap();
    let long_task = c.wait_status(long, "RUNNING", WAIT).unwrap();
    let short_task = c.wait_status(short, "RUNNING", WAIT).unwrap();
    let short_seen = Instant::now();
    let short_init = procfs::read_proc(short_task.pid as i32)
        .unwrap_or_else(|| panic!("pid {} of {short} is not there", short_task.pid))
        .key();
    let shims = [(long, shim_key(c, long)), (short, shim_key(c, short))];
    assert_ne!(shims[0].1, shims[1].1, "both containers share one shim");
    let inits = [
        (long, procfs::read_proc(long_task.pid as i32).unwrap().key()),
        (short, short_init),
    ];
    let old_containerd = c.pid();

    let status = c.stop_daemon(Duration::from_secs(10)).unwrap();
    assert!(
        !procfs::alive(old_containerd),
        "containerd {old_containerd} still runs after it exited ({status})"
    );
    assert_alive("after containerd stopped", &shims);
    assert_alive("after containerd stopped", &inits);

    // Let the second container exit while containerd is away.
    if vm {
        let down = short_requested.elapsed();
        assert!(
            down < VM_EXIT_AFTER,
            "containerd was down only {down:?} after {short} was started: its exit might \
             not fall while containerd is away"
        );
        thread::sleep((short_seen + VM_EXIT_AFTER + VM_EXIT_MARGIN) - Instant::now());
    } else {
        let release = c.task_dir().join(short).join("rootfs").join("release");
        fs::write(&release, "").unwrap();
        let deadline = Instant::now() + WAIT;
        while procfs::alive(short_init.0) {
            assert!(
                Instant::now() < deadline,
                "{short} did not exit within {WAIT:?} of its release"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    // Give its shim time to notice that it cannot report the exit.
    thread::sleep(Duration::from_secs(2));
    assert_alive("after the second container exited", &shims);
    assert_alive("after the second container exited", &inits[..1]);

    c.restart_daemon(Duration::from_secs(30)).unwrap();
    assert_ne!(c.pid(), old_containerd);
    assert_alive("after containerd restarted", &shims);

    let tasks = c.tasks().unwrap();
    let find = |id: &str| {
        tasks
            .iter()
            .find(|t| t.id == id)
            .unwrap_or_else(|| panic!("{id} not listed after the restart: {tasks:?}"))
            .clone()
    };
    let l = find(long);
    assert_eq!(
        (l.status.as_str(), l.pid),
        ("RUNNING", long_task.pid),
        "{tasks:?}"
    );
    assert_eq!(find(short).status, "STOPPED", "{tasks:?}");

    // The exit that happened while containerd was down is not lost.
    assert_eq!(c.delete_task(short).unwrap(), 5);
    c.delete_container(short).unwrap();

    // The running container still works through the reconnected shim. The
    // exit code carries the proof: `ctr` itself sometimes drops an exec's
    // output under load, with either runtime.
    let out = c
        .exec(long, "after-restart", &["sh", "-c", "exit 7"])
        .unwrap();
    assert_code(&out, 7);
    assert_alive("after the exec", &shims[..1]);
    c.kill(long, Some("SIGKILL"), false).unwrap().ok().unwrap();
    c.wait_status(long, "STOPPED", WAIT).unwrap();
    assert_eq!(c.delete_task(long).unwrap(), 137);
    c.delete_container(long).unwrap();
}

runtime_tests!(every_class: containerd_restart);
