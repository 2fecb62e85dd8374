//! cgroup v1 against the fake tree.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use super::fake::{expect, read, writes, FakeV1};
use crate::{Cgroup, Error, Hierarchy, OwnCgroups, Version};

pub(crate) fn memory(
    limit: Option<i64>,
    swap: Option<i64>,
    reservation: Option<i64>,
) -> LinuxResources {
    let mut m = LinuxMemory::default();
    m.set_limit(limit)
        .set_swap(swap)
        .set_reservation(reservation);
    let mut r = LinuxResources::default();
    r.set_memory(Some(m));
    r
}

pub(crate) fn cpu(shares: Option<u64>, quota: Option<i64>, period: Option<u64>) -> LinuxResources {
    let mut c = LinuxCpu::default();
    c.set_shares(shares).set_quota(quota).set_period(period);
    let mut r = LinuxResources::default();
    r.set_cpu(Some(c));
    r
}

pub(crate) fn pids(limit: i64) -> LinuxResources {
    let mut p = LinuxPids::default();
    p.set_limit(limit);
    let mut r = LinuxResources::default();
    r.set_pids(Some(p));
    r
}

#[test]
fn create_makes_a_dir_per_hierarchy_and_fills_cpuset() {
    let t = FakeV1::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/a/b").unwrap();
    assert_eq!(cg.version(), Version::V1);
    let root = t.root.path();
    let mut expected: Vec<PathBuf> = [
        "cpu,cpuacct",
        "cpuset",
        "freezer",
        "memory",
        "pids",
        "systemd",
    ]
    .iter()
    .map(|m| root.join(m).join("a/b"))
    .collect();
    expected.sort();
    let mut paths = cg.paths();
    paths.sort();
    assert_eq!(paths, expected);
    assert!(
        paths.iter().all(|p| !p.exists()),
        "new() must not touch the tree"
    );

    cg.create().unwrap();
    assert!(paths.iter().all(|p| p.is_dir()));
    assert_eq!(
        writes(root),
        expect(&[
            ("cpuset/a/cpuset.cpus", "0-3"),
            ("cpuset/a/cpuset.mems", "0"),
            ("cpuset/a/b/cpuset.cpus", "0-3"),
            ("cpuset/a/b/cpuset.mems", "0"),
        ])
    );
    assert_eq!(cg.path_for("cpuacct"), Some(root.join("cpu,cpuacct/a/b")));
    assert_eq!(cg.path_for("blkio"), None);

    // Creating again is harmless and rewrites nothing.
    cg.create().unwrap();
    assert!(writes(root).is_empty());
}

#[test]
fn cpuset_inherits_from_the_nearest_configured_parent() {
    let t = FakeV1::new(true);
    let h = Hierarchy::v1(BTreeMap::from([("cpuset".to_owned(), t.mount("cpuset"))]));
    Cgroup::new(&h, "/a").unwrap().create().unwrap();
    std::fs::write(t.mount("cpuset").join("a/cpuset.cpus"), "1\n").unwrap();
    writes(t.root.path());
    Cgroup::new(&h, "/a/b").unwrap().create().unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("cpuset/a/b/cpuset.cpus", "1"),
            ("cpuset/a/b/cpuset.mems", "0")
        ])
    );
}

#[test]
fn apply_writes_exactly_what_the_spec_sets() {
    let t = FakeV1::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    writes(t.root.path());

    cg.apply(&LinuxResources::default()).unwrap();
    assert!(writes(t.root.path()).is_empty());

    let mut r = memory(Some(64 << 20), None, Some(32 << 20));
    let mut c = LinuxCpu::default();
    c.set_shares(Some(512))
        .set_quota(Some(50_000))
        .set_period(Some(100_000))
        .set_cpus(Some("0-1".to_owned()))
        .set_mems(Some("0".to_owned()));
    r.set_cpu(Some(c));
    r.set_pids(pids(32).pids().to_owned());
    cg.apply(&r).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("memory/c/memory.limit_in_bytes", "67108864"),
            ("memory/c/memory.soft_limit_in_bytes", "33554432"),
            ("cpu,cpuacct/c/cpu.shares", "512"),
            ("cpu,cpuacct/c/cpu.cfs_period_us", "100000"),
            ("cpu,cpuacct/c/cpu.cfs_quota_us", "50000"),
            ("cpuset/c/cpuset.cpus", "0-1"),
            ("cpuset/c/cpuset.mems", "0"),
            ("pids/c/pids.max", "32"),
        ])
    );
    assert_eq!(
        read(t.mount("memory").join("c/memory.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(read(t.mount("pids").join("c/pids.max")), "32");
}

#[test]
fn unlimited_forms() {
    let t = FakeV1::new(false);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    writes(t.root.path());
    cg.apply(&memory(Some(-1), None, Some(-1))).unwrap();
    cg.apply(&cpu(Some(0), Some(-1), None)).unwrap();
    cg.apply(&cpu(None, Some(0), None)).unwrap();
    cg.apply(&pids(0)).unwrap();
    cg.apply(&pids(-1)).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("memory/c/memory.limit_in_bytes", "-1"),
            ("memory/c/memory.soft_limit_in_bytes", "-1"),
            ("cpu,cpuacct/c/cpu.cfs_quota_us", "-1"),
            ("cpu,cpuacct/c/cpu.cfs_quota_us", "-1"),
            ("pids/c/pids.max", "max"),
            ("pids/c/pids.max", "max"),
        ])
    );
}

#[test]
fn memory_and_swap_order_follows_the_direction() {
    let t = FakeV1::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    let limit = t.mount("memory").join("c/memory.limit_in_bytes");
    writes(t.root.path());

    // From unlimited down: the limit goes first.
    cg.apply(&memory(Some(256 << 20), Some(512 << 20), None))
        .unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("memory/c/memory.limit_in_bytes", "268435456"),
            ("memory/c/memory.memsw.limit_in_bytes", "536870912"),
        ])
    );

    // Raising past the current limit: memory+swap goes first.
    std::fs::write(&limit, "268435456\n").unwrap();
    cg.apply(&memory(Some(1 << 30), Some(2 << 30), None))
        .unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("memory/c/memory.memsw.limit_in_bytes", "2147483648"),
            ("memory/c/memory.limit_in_bytes", "1073741824"),
        ])
    );

    // Lowering memory+swap below the current limit: the limit goes first.
    std::fs::write(&limit, "1073741824\n").unwrap();
    cg.apply(&memory(Some(64 << 20), Some(64 << 20), None))
        .unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("memory/c/memory.limit_in_bytes", "67108864"),
            ("memory/c/memory.memsw.limit_in_bytes", "67108864"),
        ])
    );

    // Unlimited memory without a swap value lifts memory+swap first.
    cg.apply(&memory(Some(-1), None, None)).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("memory/c/memory.memsw.limit_in_bytes", "-1"),
            ("memory/c/memory.limit_in_bytes", "-1"),
        ])
    );

    // Swap alone, and a swap of 0 (unset).
    cg.apply(&memory(None, Some(1 << 30), None)).unwrap();
    cg.apply(&memory(Some(1 << 20), Some(0), None)).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("memory/c/memory.memsw.limit_in_bytes", "1073741824"),
            ("memory/c/memory.limit_in_bytes", "1048576"),
        ])
    );

    let err = cg
        .apply(&memory(Some(2 << 20), Some(1 << 20), None))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidResource { .. }), "{err}");
    assert!(writes(t.root.path()).is_empty());
}

#[test]
fn swap_without_memsw_is_skipped() {
    let t = FakeV1::new(false);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    writes(t.root.path());
    cg.apply(&memory(Some(64 << 20), Some(128 << 20), None))
        .unwrap();
    cg.apply(&memory(Some(-1), None, None)).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("memory/c/memory.limit_in_bytes", "67108864"),
            ("memory/c/memory.limit_in_bytes", "-1"),
        ])
    );
}

#[test]
fn missing_controller_and_unified_are_errors() {
    let t = FakeV1::new(true);
    let h = Hierarchy::v1(BTreeMap::from([("memory".to_owned(), t.mount("memory"))]));
    let cg = Cgroup::new(&h, "/c").unwrap();
    cg.create().unwrap();
    let err = cg.apply(&pids(10)).unwrap_err();
    assert!(
        matches!(&err, Error::MissingController { controller, .. } if controller == "pids"),
        "{err}"
    );
    let mut r = LinuxResources::default();
    r.set_unified(Some([("memory.high".to_owned(), "1".to_owned())].into()));
    assert!(matches!(cg.apply(&r), Err(Error::InvalidResource { .. })));
}

#[test]
fn write_errors_name_file_and_value() {
    let t = FakeV1::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    // Not created: every file is missing.
    let err = cg.apply(&pids(5)).unwrap_err();
    let file = t.mount("pids").join("c/pids.max");
    assert_eq!(
        err.to_string(),
        format!(
            "writing \"5\" to {}: No such file or directory",
            file.display()
        )
    );
}

#[test]
fn destroy_removes_nested_cgroups_and_is_idempotent() {
    let t = FakeV1::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/p/c").unwrap();
    cg.create().unwrap();
    Cgroup::new(&t.hierarchy(), "/p/c/inner/deeper")
        .unwrap()
        .create()
        .unwrap();
    cg.destroy().unwrap();
    for p in cg.paths() {
        assert!(!p.exists(), "{} left", p.display());
        assert!(p.parent().unwrap().is_dir(), "shared parent removed");
    }
    cg.destroy().unwrap();
    assert_eq!(cg.procs().unwrap(), Vec::<i32>::new());
    cg.kill_all().unwrap();
}

#[test]
fn add_process_and_procs() {
    let t = FakeV1::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    writes(t.root.path());
    cg.add_process(4242).unwrap();
    let mut w = writes(t.root.path());
    w.sort();
    let mut expected: Vec<(String, String)> = super::fake::V1_MOUNTS
        .iter()
        .map(|(m, _)| (format!("{m}/c/cgroup.procs"), "4242".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(w, expected);
    // procs() is the union over the hierarchies.
    std::fs::write(t.mount("memory").join("c/cgroup.procs"), "7\n3\n").unwrap();
    std::fs::write(t.mount("pids").join("c/cgroup.procs"), "3\n5\n").unwrap();
    std::fs::write(t.mount("cpu").join("c/cgroup.procs"), "").unwrap();
    std::fs::write(t.mount("cpuset").join("c/cgroup.procs"), "").unwrap();
    std::fs::write(t.mount("freezer").join("c/cgroup.procs"), "").unwrap();
    std::fs::write(t.mount("name=systemd").join("c/cgroup.procs"), "").unwrap();
    assert_eq!(cg.procs().unwrap(), [3, 5, 7]);
    std::fs::write(t.mount("pids").join("c/cgroup.procs"), "x\n").unwrap();
    assert!(matches!(cg.procs(), Err(Error::Parse { .. })));
}

#[test]
fn path_rules() {
    let t = FakeV1::new(true);
    let h = t.hierarchy();
    let own = OwnCgroups::parse(
        "6:cpu,cpuacct:/user/c\n5:memory:/user/m\n4:pids:/\n3:cpuset:/\n2:freezer:/f\n1:name=systemd:/s\n",
    )
    .unwrap();

    let rel = Cgroup::with_own(&h, "ctr/x", &own).unwrap();
    assert_eq!(
        rel.path_for("cpu"),
        Some(t.mount("cpu").join("user/c/ctr/x"))
    );
    assert_eq!(
        rel.path_for("memory"),
        Some(t.mount("memory").join("user/m/ctr/x"))
    );
    assert_eq!(rel.path_for("pids"), Some(t.mount("pids").join("ctr/x")));
    assert_eq!(
        rel.path_for("name=systemd"),
        Some(t.mount("name=systemd").join("s/ctr/x"))
    );

    // Absolute paths ignore the own cgroups.
    let abs = Cgroup::with_own(&h, "/ctr/x", &own).unwrap();
    assert_eq!(
        abs.path_for("memory"),
        Some(t.mount("memory").join("ctr/x"))
    );

    let sd = Cgroup::with_own(&h, "machine.slice:strata:abc", &own).unwrap();
    assert_eq!(
        sd.path_for("memory"),
        Some(t.mount("memory").join("machine.slice/strata-abc.scope"))
    );
    assert_eq!(sd.name(), "machine.slice:strata:abc");

    for bad in ["../x", "/a/../../x", "", "/", "a:b"] {
        assert!(
            matches!(
                Cgroup::with_own(&h, bad, &own),
                Err(Error::InvalidPath { .. })
            ),
            "{bad:?}"
        );
    }

    // A relative path needs the own cgroup of every hierarchy.
    let partial = OwnCgroups::parse("5:memory:/m\n").unwrap();
    assert!(matches!(
        Cgroup::with_own(&h, "x", &partial),
        Err(Error::OwnCgroupUnknown { .. })
    ));
}

#[test]
fn relative_path_below_a_mount_root() {
    // The memory hierarchy is mounted from /docker/abc, as inside a
    // container without a cgroup namespace.
    let h = Hierarchy::v1_with_roots(BTreeMap::from([(
        "memory".to_owned(),
        (PathBuf::from("/m"), "/docker/abc".to_owned()),
    )]));
    let own = OwnCgroups::parse("5:memory:/docker/abc/sub\n").unwrap();
    let cg = Cgroup::with_own(&h, "ctr", &own).unwrap();
    assert_eq!(cg.paths(), [PathBuf::from("/m/sub/ctr")]);
    let cg = Cgroup::with_own(&h, "/ctr", &own).unwrap();
    assert_eq!(cg.paths(), [PathBuf::from("/m/ctr")]);
}
