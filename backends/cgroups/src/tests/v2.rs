//! cgroup v2 against the fake tree.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxCpu, LinuxResources};

use super::fake::{expect, read, writes, FakeV2};
use super::v1::{cpu, memory, pids};
use crate::{shares_to_weight, Cgroup, Error, Hierarchy, OwnCgroups, Version};

#[test]
fn shares_to_weight_conversion() {
    for (shares, weight) in [
        (0, 1),
        (2, 1),
        (512, 20),
        (1024, 39),
        (2048, 79),
        (262_144, 10_000),
        (1 << 40, 10_000),
    ] {
        assert_eq!(shares_to_weight(shares), weight, "shares {shares}");
    }
}

#[test]
fn create_enables_controllers_down_to_the_parent() {
    let t = FakeV2::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/a/b").unwrap();
    assert_eq!(cg.version(), Version::V2);
    assert_eq!(cg.paths(), [t.root.path().join("a/b")]);
    cg.create().unwrap();
    assert!(t.root.path().join("a/b").is_dir());
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("cgroup.subtree_control", "+cpuset +cpu +memory +pids"),
            ("a/cgroup.subtree_control", "+cpuset +cpu +memory +pids"),
        ])
    );
    // The leaf holds processes, so it enables nothing.
    assert_eq!(read(t.root.path().join("a/b/cgroup.subtree_control")), "");
    assert_eq!(
        read(t.root.path().join("a/b/cgroup.controllers")),
        "cpuset cpu memory pids"
    );

    // Already enabled (as the kernel would now list them): nothing is
    // written again.
    for dir in ["", "a"] {
        let control = t.root.path().join(dir).join("cgroup.subtree_control");
        std::fs::write(control, "cpuset cpu memory pids\n").unwrap();
    }
    Cgroup::new(&t.hierarchy(), "/a/c")
        .unwrap()
        .create()
        .unwrap();
    assert!(writes(t.root.path()).is_empty());
}

#[test]
fn create_enables_only_what_is_missing_and_offered() {
    let t = FakeV2::new(true);
    std::fs::write(t.root.path().join("cgroup.controllers"), "cpu io memory").unwrap();
    std::fs::write(t.root.path().join("cgroup.subtree_control"), "memory").unwrap();
    Cgroup::new(&t.hierarchy(), "/x").unwrap().create().unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[("cgroup.subtree_control", "+cpu")])
    );
}

#[test]
fn apply_writes_exactly_what_the_spec_sets() {
    let t = FakeV2::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    writes(t.root.path());

    cg.apply(&LinuxResources::default()).unwrap();
    assert!(writes(t.root.path()).is_empty());

    let mut r = memory(Some(64 << 20), Some(96 << 20), Some(16 << 20));
    let mut c = LinuxCpu::default();
    c.set_shares(Some(1024))
        .set_quota(Some(50_000))
        .set_period(Some(100_000))
        .set_cpus(Some("1".to_owned()))
        .set_mems(Some("0".to_owned()));
    r.set_cpu(Some(c));
    r.set_pids(pids(64).pids().to_owned());
    r.set_unified(Some(
        [
            ("memory.high".to_owned(), "50000000".to_owned()),
            ("cpu.idle".to_owned(), "0".to_owned()),
        ]
        .into(),
    ));
    std::fs::write(t.root.path().join("c/memory.high"), "max").unwrap();
    std::fs::write(t.root.path().join("c/cpu.idle"), "0").unwrap();
    cg.apply(&r).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("c/memory.max", "67108864"),
            ("c/memory.swap.max", "33554432"),
            ("c/memory.low", "16777216"),
            ("c/cpu.weight", "39"),
            ("c/cpu.max", "50000 100000"),
            ("c/cpuset.cpus", "1"),
            ("c/cpuset.mems", "0"),
            ("c/pids.max", "64"),
            ("c/cpu.idle", "0"),
            ("c/memory.high", "50000000"),
        ])
    );
    assert_eq!(read(t.root.path().join("c/cpu.weight")), "39");
}

#[test]
fn max_forms() {
    let t = FakeV2::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    std::fs::write(t.root.path().join("c/cpu.max"), "20000 100000\n").unwrap();
    writes(t.root.path());
    cg.apply(&memory(Some(-1), Some(-1), Some(-1))).unwrap();
    cg.apply(&cpu(None, Some(-1), Some(50_000))).unwrap();
    cg.apply(&cpu(None, Some(0), None)).unwrap();
    cg.apply(&cpu(None, Some(30_000), None)).unwrap();
    // A period alone keeps the current quota.
    std::fs::write(t.root.path().join("c/cpu.max"), "20000 100000\n").unwrap();
    cg.apply(&cpu(None, None, Some(200_000))).unwrap();
    cg.apply(&pids(0)).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("c/memory.max", "max"),
            ("c/memory.swap.max", "max"),
            ("c/memory.low", "max"),
            ("c/cpu.max", "max 50000"),
            ("c/cpu.max", "max"),
            ("c/cpu.max", "30000"),
            ("c/cpu.max", "20000 200000"),
            ("c/pids.max", "max"),
        ])
    );
}

#[test]
fn swap_rules() {
    let t = FakeV2::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    writes(t.root.path());
    for bad in [
        memory(None, Some(1 << 20), None),
        memory(Some(-1), Some(1 << 20), None),
        memory(Some(2 << 20), Some(1 << 20), None),
    ] {
        let err = cg.apply(&bad).unwrap_err();
        assert!(matches!(err, Error::InvalidResource { .. }), "{err}");
    }
    // Swap equal to the limit means no swap at all.
    cg.apply(&memory(Some(1 << 20), Some(1 << 20), None))
        .unwrap();
    // A swap of 0 is unset.
    cg.apply(&memory(Some(1 << 20), Some(0), None)).unwrap();
    let w = writes(t.root.path());
    assert_eq!(
        w[w.len() - 3..],
        expect(&[
            ("c/memory.max", "1048576"),
            ("c/memory.swap.max", "0"),
            ("c/memory.max", "1048576"),
        ])
    );

    // Without swap accounting the swap part is skipped with a warning.
    let t = FakeV2::new(false);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    writes(t.root.path());
    cg.apply(&memory(Some(1 << 20), Some(2 << 20), None))
        .unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[("c/memory.max", "1048576")])
    );
}

#[test]
fn unified_keys_must_be_file_names() {
    let t = FakeV2::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    for key in ["../x", "a/b", "", ".."] {
        let mut r = LinuxResources::default();
        r.set_unified(Some([(key.to_owned(), "1".to_owned())].into()));
        assert!(
            matches!(cg.apply(&r), Err(Error::InvalidResource { .. })),
            "{key:?}"
        );
    }
}

#[test]
fn destroy_is_idempotent() {
    let t = FakeV2::new(true);
    let cg = Cgroup::new(&t.hierarchy(), "/p/c").unwrap();
    cg.create().unwrap();
    Cgroup::new(&t.hierarchy(), "/p/c/nested")
        .unwrap()
        .create()
        .unwrap();
    cg.destroy().unwrap();
    assert!(!t.root.path().join("p/c").exists());
    assert!(t.root.path().join("p").is_dir());
    cg.destroy().unwrap();
}

#[test]
fn path_rules() {
    let h = Hierarchy::v2(PathBuf::from("/fs"));
    let own = OwnCgroups::parse("0::/user.slice/session\n").unwrap();
    let p = |path: &str| Cgroup::with_own(&h, path, &own).map(|c| c.paths());
    assert_eq!(
        p("x/y").unwrap(),
        [PathBuf::from("/fs/user.slice/session/x/y")]
    );
    assert_eq!(p("/x/y").unwrap(), [PathBuf::from("/fs/x/y")]);
    assert_eq!(
        p("system.slice:cri:id").unwrap(),
        [PathBuf::from("/fs/system.slice/cri-id.scope")]
    );
    assert!(matches!(p("x/../y"), Err(Error::InvalidPath { .. })));
    let v1_only = OwnCgroups::parse("4:memory:/\n").unwrap();
    assert!(matches!(
        Cgroup::with_own(&h, "x", &v1_only),
        Err(Error::OwnCgroupUnknown { .. })
    ));
}
