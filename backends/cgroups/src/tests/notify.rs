//! OOM watchers and the freezer against the fake tree.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::fake::{expect, writes, FakeV1, FakeV2};
use crate::oom::oom_kills;
use crate::{Cgroup, Error, Hierarchy, OomWatcher};

/// Whether the watcher's descriptor polls readable within `ms`.
pub(crate) fn readable(w: &OomWatcher, ms: u16) -> bool {
    let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::from(ms)).unwrap() == 1
}

#[test]
fn oom_counts_parse() {
    assert_eq!(
        oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
        Some(3)
    );
    assert_eq!(oom_kills("oom_kill_disable 1\nunder_oom 1\n"), None);
    assert_eq!(
        oom_kills("low 0\nhigh 4\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n"),
        Some(1)
    );
    assert_eq!(oom_kills("oom_kill many\n"), None);
}

#[test]
fn v1_watcher_registers_and_counts() {
    let t = FakeV1::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    let control = t.mount("memory").join("c/memory.oom_control");
    std::fs::write(&control, "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n").unwrap();
    writes(t.root.path());

    let mut w = cg.oom_watcher().unwrap();
    let w_journal = writes(t.root.path());
    assert_eq!(w_journal.len(), 1);
    assert_eq!(w_journal[0].0, "memory/c/cgroup.event_control");
    let fds: Vec<i32> = w_journal[0]
        .1
        .split(' ')
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fds.len(), 2, "{:?}", w_journal[0].1);
    assert_eq!(fds[0], std::os::fd::AsRawFd::as_raw_fd(&w));

    assert!(!readable(&w, 0));
    assert_eq!(w.drain().unwrap(), 0);
    // One OOM event, the kill not counted yet: the event counts.
    w.signal_for_test(1);
    assert!(readable(&w, 0));
    assert_eq!(w.drain().unwrap(), 1);
    assert!(!readable(&w, 0), "drain consumed the notification");
    // The counter catches up (5 → 8) with one more event: 3 kills in all.
    std::fs::write(&control, "oom_kill_disable 0\nunder_oom 0\noom_kill 8\n").unwrap();
    w.signal_for_test(1);
    assert_eq!(w.drain().unwrap(), 2);
    assert_eq!(w.drain().unwrap(), 0);
    // Once the cgroup is gone, its removal signal counts nothing.
    std::fs::remove_file(&control).unwrap();
    w.signal_for_test(1);
    assert_eq!(w.drain().unwrap(), 0);
    assert!(!readable(&w, 0));
}

#[test]
fn v2_watcher_follows_memory_events() {
    let t = FakeV2::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    let events = t.root.path().join("c/memory.events");
    let text = |kills: u32| format!("low 0\nhigh 0\nmax 3\noom 1\noom_kill {kills}\n");
    std::fs::write(&events, text(1)).unwrap();

    let mut w = cg.oom_watcher().unwrap();
    assert!(!readable(&w, 0));
    std::fs::write(&events, text(3)).unwrap();
    assert!(readable(&w, 1000), "IN_MODIFY did not arrive");
    assert_eq!(w.drain().unwrap(), 2);
    assert!(!readable(&w, 0));
    assert_eq!(w.drain().unwrap(), 0);
    // Another memory event without a kill.
    std::fs::write(&events, text(3).replace("max 3", "max 4")).unwrap();
    assert!(readable(&w, 1000));
    assert_eq!(w.drain().unwrap(), 0);
}

#[test]
fn watcher_needs_the_memory_controller() {
    let t = FakeV1::new(true);
    let h = Hierarchy::v1(BTreeMap::from([("pids".to_owned(), t.mount("pids"))]));
    let cg = Cgroup::new(&h, "/c").unwrap();
    cg.create().unwrap();
    assert!(matches!(
        cg.oom_watcher(),
        Err(Error::MissingController { controller, .. }) if controller == "memory"
    ));
    // v2 without the memory controller enabled: memory.events is missing.
    let t = FakeV2::new(true);
    std::fs::write(t.root.path().join("cgroup.controllers"), "cpu").unwrap();
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    let err = cg.oom_watcher().unwrap_err();
    assert!(err.to_string().contains("memory.events"), "{err}");
}

#[test]
fn v1_freeze_thaw() {
    let t = FakeV1::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    writes(t.root.path());
    assert!(!cg.is_frozen().unwrap());
    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("freezer/c/freezer.state", "FROZEN"),
            ("freezer/c/freezer.state", "THAWED"),
        ])
    );

    // A freeze the kernel never completes (the state file reads back
    // nothing): written again and again, then thawed back, and an error.
    let state = t.mount("freezer").join("c/freezer.state");
    std::fs::remove_file(&state).unwrap();
    std::os::unix::fs::symlink("/dev/null", &state).unwrap();
    let err = cg.freeze_within(Duration::from_millis(50)).unwrap_err();
    assert!(matches!(err, Error::FreezeTimeout { .. }), "{err}");
    let w = writes(t.root.path());
    assert!(w.len() > 2, "{w:?}");
    assert!(w[..w.len() - 1].iter().all(|(_, v)| v == "FROZEN"), "{w:?}");
    assert_eq!(w.last().unwrap().1, "THAWED");
    std::fs::remove_file(&state).unwrap();

    // Without a freezer hierarchy.
    let h = Hierarchy::v1(BTreeMap::from([("pids".to_owned(), t.mount("pids"))]));
    let cg = Cgroup::new(&h, "/c").unwrap();
    assert!(matches!(
        cg.freeze(),
        Err(Error::MissingController { controller, .. }) if controller == "freezer"
    ));
}

#[test]
fn v2_freeze_waits_for_the_event() {
    let t = FakeV2::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    writes(t.root.path());
    let events = t.root.path().join("c/cgroup.events");

    // The "kernel" reports frozen a little later.
    let reporter = {
        let events = events.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::write(events, "populated 1\nfrozen 1\n").unwrap();
        })
    };
    assert!(!cg.is_frozen().unwrap());
    cg.freeze().unwrap();
    reporter.join().unwrap();
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[("c/cgroup.freeze", "1"), ("c/cgroup.freeze", "0")])
    );

    // Never reported: thawed again, and an error.
    std::fs::write(&events, "populated 1\nfrozen 0\n").unwrap();
    let err = cg.freeze_within(Duration::from_millis(30)).unwrap_err();
    assert!(matches!(err, Error::FreezeTimeout { .. }), "{err}");
    assert_eq!(
        writes(t.root.path()),
        expect(&[("c/cgroup.freeze", "1"), ("c/cgroup.freeze", "0")])
    );
}
