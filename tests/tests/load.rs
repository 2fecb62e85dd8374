//! Load: 30 containers created and started at once, and 30 processes
//! exec'd into one container at once, without the shim keeping anything.

use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use strata_e2e::containerd::is_strata;
use strata_e2e::procfs::{self, Holdings};
use strata_e2e::{runtime_tests, Containerd, RunOptions};

const WAIT: Duration = Duration::from_secs(20);

/// How long starting [`AT_ONCE`] microVM containers at once may take.
const VM_START: Duration = Duration::from_secs(600);

/// Held by each case of each runtime, so that the cases of this file run
/// one at a time: thirty microVMs booting under software emulation on two
/// CPUs would starve any other runtime's containers past their timeouts.
static ALONE: Mutex<()> = Mutex::new(());

/// Takes [`ALONE`] for the rest of the case.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many containers, and how many execs, at once.
const AT_ONCE: usize = 30;

/// How long the shim may take to get back to its starting counts once the
/// execs have ended (idle worker threads linger for a while before they
/// exit).
const SETTLE: Duration = Duration::from_secs(30);

/// `AT_ONCE` concurrent `ctr run -d ... sleep 1000` all succeed and all
/// run; then all are killed and removed.
fn many_containers(c: &Containerd) {
    let _alone = alone();
    let ids: Vec<String> = (0..AT_ONCE).map(|i| format!("load-{i}")).collect();
    // Thirty guests booting at once under software emulation share two
    // CPUs; each `ctr run` waits for all of them.
    let vm = c.runtime() == strata_e2e::STRATA_MICROVM;
    let started = Instant::now();
    let results: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| {
                s.spawn(move || {
                    let opts = RunOptions::new(id, ["sleep", "1000"]);
                    c.run_detached(&if vm { opts.timeout(VM_START) } else { opts })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = started.elapsed();
    for (id, r) in ids.iter().zip(&results) {
        if let Err(e) = r {
            panic!("starting {id} failed: {e:#}");
        }
    }
    eprintln!("{AT_ONCE} containers started concurrently in {took:?}");

    let tasks = c.tasks().unwrap();
    for id in &ids {
        let t = tasks
            .iter()
            .find(|t| &t.id == id)
            .unwrap_or_else(|| panic!("{id} is not listed: {tasks:?}"));
        assert_eq!(t.status, "RUNNING", "{tasks:?}");
        assert!(procfs::alive(t.pid as i32), "{t:?} is not alive");
    }
    assert_eq!(tasks.len(), AT_ONCE, "{tasks:?}");

    for id in &ids {
        assert_eq!(c.remove(id).unwrap(), 137, "{id}");
    }
    assert!(c.tasks().unwrap().is_empty());
}

/// `AT_ONCE` concurrent `ctr task exec` into one container all succeed with
/// their own output; once they have ended, the shim has as many open
/// descriptors and (Strata) threads as before them.
fn many_execs(c: &Containerd) {
    let _alone = alone();
    let id = "exec-target";
    c.run_detached(&RunOptions::new(id, ["sleep", "1000"]))
        .unwrap();
    c.wait_status(id, "RUNNING", WAIT).unwrap();
    let shim = c.shim_server(id).expect("no shim server").pid;
    // One exec first, so that what the shim sets up once, on its first
    // exec, is part of the baseline.
    let out = c.exec(id, "warmup", &["true"]).unwrap();
    assert!(out.success(), "{out}");
    thread::sleep(Duration::from_millis(500));
    let before = Holdings::of(shim);

    let results: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = (0..AT_ONCE)
            .map(|n| {
                s.spawn(move || {
                    let script = format!("echo {n}");
                    c.exec(id, &format!("e{n}"), &["sh", "-c", &script])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (n, r) in results.into_iter().enumerate() {
        let out = r.unwrap_or_else(|e| panic!("exec e{n}: {e:#}"));
        assert!(out.success(), "exec e{n}: {out}");
        assert_eq!(out.stdout, format!("{n}\n"), "exec e{n}: {out}");
    }

    // runc's shim is a Go program whose runtime keeps the OS threads it
    // created, and now and then one descriptor it opened along with one of
    // them; for it only the descriptors are expected back, give or take
    // that one. Strata's shim gets no slack.
    let strata = is_strata(c.runtime());
    let after = before.assert_back(shim, usize::from(!strata), strata, SETTLE);
    eprintln!("shim {shim}: {before:?} before {AT_ONCE} execs, {after:?} after");
    assert_eq!(c.remove(id).unwrap(), 137);
}

runtime_tests!(every_class: many_containers, many_execs);
