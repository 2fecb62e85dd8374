//! Every resource beyond memory limits, cpu shares/quota, cpuset and pids,
//! on both versions, against the fake tree: exact files and values.

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};

use super::fake::{add_files, expect, writes, FakeV1, FakeV2};
use super::spec::{devices, full_block_io, hugepages, network, rdma, rule, with_cpu, with_memory};
use crate::sys::fake::DEVICE_PROGRAM;
use crate::{blkio_weight_to_io_weight, Cgroup, Error};

fn v1_cgroup(t: &FakeV1) -> Cgroup {
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    writes(t.root.path());
    cg
}

fn v2_cgroup(t: &FakeV2) -> Cgroup {
    let cg = Cgroup::new(&t.hierarchy(), "/c").unwrap();
    cg.create().unwrap();
    writes(t.root.path());
    cg
}

fn kernel_memory() -> LinuxMemory {
    let mut m = LinuxMemory::default();
    m.set_kernel(Some(64 << 20))
        .set_kernel_tcp(Some(16 << 20))
        .set_swappiness(Some(10))
        .set_disable_oom_killer(Some(true));
    m
}

#[test]
fn v1_memory_kernel_swappiness_and_oom_killer() {
    let t = FakeV1::all(true);
    let cg = v1_cgroup(&t);
    cg.apply(&with_memory(kernel_memory())).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("memory/c/memory.kmem.limit_in_bytes", "67108864"),
            ("memory/c/memory.kmem.tcp.limit_in_bytes", "16777216"),
            ("memory/c/memory.swappiness", "10"),
            ("memory/c/memory.oom_control", "1"),
        ])
    );

    // A kernel without kernel memory limits: skipped, the rest written.
    std::fs::remove_file(t.mount("memory").join("c/memory.kmem.limit_in_bytes")).unwrap();
    let mut m = kernel_memory();
    m.set_disable_oom_killer(Some(false));
    cg.apply(&with_memory(m)).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("memory/c/memory.kmem.tcp.limit_in_bytes", "16777216"),
            ("memory/c/memory.swappiness", "10"),
            ("memory/c/memory.oom_control", "0"),
        ])
    );

    let mut m = LinuxMemory::default();
    m.set_swappiness(Some(101));
    let err = cg.apply(&with_memory(m)).unwrap_err();
    assert!(matches!(err, Error::InvalidResource { .. }), "{err}");
    assert!(writes(t.root.path()).is_empty());
}

#[test]
fn v2_memory_settings_without_equivalent_write_nothing() {
    let t = FakeV2::new(true);
    let cg = v2_cgroup(&t);
    let mut m = kernel_memory();
    m.set_swappiness(Some(101));
    cg.apply(&with_memory(m)).unwrap();
    assert!(writes(t.root.path()).is_empty());
}

#[test]
fn check_before_update_refuses_a_limit_below_usage() {
    let mut m = LinuxMemory::default();
    m.set_limit(Some(50 << 20))
        .set_check_before_update(Some(true));
    let mut higher = m;
    higher.set_limit(Some(200 << 20));

    let t = FakeV1::new(false);
    let cg = v1_cgroup(&t);
    std::fs::write(
        t.mount("memory").join("c/memory.usage_in_bytes"),
        "104857600\n",
    )
    .unwrap();
    let err = cg.apply(&with_memory(m)).unwrap_err();
    assert!(
        err.to_string()
            .contains("below the current usage 104857600"),
        "{err}"
    );
    cg.apply(&with_memory(higher)).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[("memory/c/memory.limit_in_bytes", "209715200")])
    );

    let t = FakeV2::new(false);
    let cg = v2_cgroup(&t);
    std::fs::write(t.root.path().join("c/memory.current"), "104857600\n").unwrap();
    assert!(cg.apply(&with_memory(m)).is_err());
    cg.apply(&with_memory(higher)).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[("c/memory.max", "209715200")])
    );
}

#[test]
fn v1_raising_the_limit_past_memory_and_swap_needs_swap() {
    let t = FakeV1::new(true);
    let cg = v1_cgroup(&t);
    let mut m = LinuxMemory::default();
    m.set_limit(Some(64 << 20)).set_swap(Some(128 << 20));
    cg.apply(&with_memory(m)).unwrap();
    writes(t.root.path());
    let mut m = LinuxMemory::default();
    m.set_limit(Some(256 << 20));
    let err = cg.apply(&with_memory(m)).unwrap_err();
    assert!(
        err.to_string()
            .contains("above the current memory+swap limit 134217728"),
        "{err}"
    );
    assert!(writes(t.root.path()).is_empty());
    // Within memory+swap, a limit alone is fine.
    m.set_limit(Some(100 << 20));
    cg.apply(&with_memory(m)).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[("memory/c/memory.limit_in_bytes", "104857600")])
    );
}

fn cpu_extras() -> LinuxCpu {
    let mut c = LinuxCpu::default();
    c.set_quota(Some(50_000))
        .set_period(Some(100_000))
        .set_burst(Some(5_000))
        .set_realtime_period(Some(500_000))
        .set_realtime_runtime(Some(200_000))
        .set_idle(Some(1));
    c
}

#[test]
fn v1_cpu_burst_realtime_and_idle() {
    let t = FakeV1::new(true);
    let cg = v1_cgroup(&t);
    cg.apply(&with_cpu(cpu_extras())).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("cpu,cpuacct/c/cpu.cfs_period_us", "100000"),
            ("cpu,cpuacct/c/cpu.cfs_quota_us", "50000"),
            ("cpu,cpuacct/c/cpu.cfs_burst_us", "5000"),
            ("cpu,cpuacct/c/cpu.rt_period_us", "500000"),
            ("cpu,cpuacct/c/cpu.rt_runtime_us", "200000"),
            ("cpu,cpuacct/c/cpu.idle", "1"),
        ])
    );
    // Each alone.
    let mut c = LinuxCpu::default();
    c.set_realtime_runtime(Some(-1));
    cg.apply(&with_cpu(c)).unwrap();
    let mut c = LinuxCpu::default();
    c.set_burst(Some(0));
    cg.apply(&with_cpu(c)).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("cpu,cpuacct/c/cpu.rt_runtime_us", "-1"),
            ("cpu,cpuacct/c/cpu.cfs_burst_us", "0"),
        ])
    );
}

#[test]
fn v2_cpu_burst_and_idle_but_no_realtime() {
    let t = FakeV2::new(true);
    let cg = v2_cgroup(&t);
    cg.apply(&with_cpu(cpu_extras())).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("c/cpu.max", "50000 100000"),
            ("c/cpu.max.burst", "5000"),
            ("c/cpu.idle", "1"),
        ])
    );
}

#[test]
fn v1_block_io() {
    let t = FakeV1::all(true);
    let cg = v1_cgroup(&t);
    cg.apply(&full_block_io()).unwrap();
    let throttle = |f: &str| format!("blkio/c/blkio.throttle.{f}");
    let (rbps, wbps, riops, wiops) = (
        throttle("read_bps_device"),
        throttle("write_bps_device"),
        throttle("read_iops_device"),
        throttle("write_iops_device"),
    );
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("blkio/c/blkio.weight", "500"),
            ("blkio/c/blkio.leaf_weight", "300"),
            ("blkio/c/blkio.weight_device", "8:0 200"),
            ("blkio/c/blkio.leaf_weight_device", "8:0 100"),
            ("blkio/c/blkio.weight_device", "8:16 1000"),
            (&rbps, "8:0 1048576"),
            (&wbps, "8:16 2097152"),
            (&wbps, "8:0 0"),
            (&riops, "8:0 100"),
            (&wiops, "8:0 50"),
        ])
    );

    // BFQ only: its weight files.
    let dir = t.mount("blkio").join("c");
    std::fs::remove_file(dir.join("blkio.weight")).unwrap();
    add_files(
        &dir,
        &[
            ("blkio.bfq.weight", "100\n"),
            ("blkio.bfq.weight_device", ""),
        ],
    );
    let mut r = full_block_io();
    let mut b = r.block_io().clone().unwrap();
    b.set_leaf_weight(None)
        .set_throttle_read_bps_device(None)
        .set_throttle_write_bps_device(None)
        .set_throttle_read_iops_device(None)
        .set_throttle_write_iops_device(None);
    r.set_block_io(Some(b));
    cg.apply(&r).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("blkio/c/blkio.bfq.weight", "500"),
            ("blkio/c/blkio.bfq.weight_device", "8:0 200"),
            ("blkio/c/blkio.leaf_weight_device", "8:0 100"),
            ("blkio/c/blkio.bfq.weight_device", "8:16 1000"),
        ])
    );
}

#[test]
fn io_weight_conversion() {
    for (blkio, io) in [
        (10, 1),
        (100, 910),
        (200, 1920),
        (500, 4950),
        (1000, 10_000),
        (1, 1),
        (5000, 10_000),
    ] {
        assert_eq!(blkio_weight_to_io_weight(blkio), io, "blkio weight {blkio}");
    }
}

#[test]
fn v2_io_weight_and_max() {
    let t = FakeV2::new(true);
    let cg = v2_cgroup(&t);
    let dir = t.root.path().join("c");
    add_files(&dir, &[("io.weight", "default 100\n"), ("io.max", "")]);
    cg.apply(&full_block_io()).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            // The io controller is enabled on demand.
            ("cgroup.subtree_control", "+io"),
            ("c/io.weight", "4950"),
            ("c/io.weight", "8:0 1920"),
            ("c/io.weight", "8:16 10000"),
            ("c/io.max", "8:0 rbps=1048576 wbps=max riops=100 wiops=50"),
            ("c/io.max", "8:16 wbps=2097152"),
        ])
    );

    // With BFQ, its own weight file and scale.
    add_files(&dir, &[("io.bfq.weight", "default 100\n")]);
    std::fs::write(t.root.path().join("cgroup.subtree_control"), "cpu io").unwrap();
    cg.apply(&full_block_io()).unwrap();
    let w = writes(t.root.path());
    assert_eq!(
        w[..3],
        expect(&[
            ("c/io.bfq.weight", "500"),
            ("c/io.bfq.weight", "8:0 200"),
            ("c/io.bfq.weight", "8:16 1000"),
        ])
    );
}

#[test]
fn hugetlb_limits_on_both_versions() {
    let limits = hugepages(&[("2MB", 1 << 30), ("1GB", -1)]);

    let t = FakeV1::all(true);
    let cg = v1_cgroup(&t);
    cg.apply(&limits).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("hugetlb/c/hugetlb.2MB.limit_in_bytes", "1073741824"),
            ("hugetlb/c/hugetlb.2MB.rsvd.limit_in_bytes", "1073741824"),
            ("hugetlb/c/hugetlb.1GB.limit_in_bytes", "-1"),
        ])
    );
    for bad in ["", "2MB/../x", "2 MB"] {
        let err = cg.apply(&hugepages(&[(bad, 1)])).unwrap_err();
        assert!(
            matches!(err, Error::InvalidResource { .. }),
            "{bad:?}: {err}"
        );
    }
    assert!(writes(t.root.path()).is_empty());

    // Without the hugetlb hierarchy.
    let t = FakeV1::new(true);
    let cg = v1_cgroup(&t);
    let err = cg.apply(&limits).unwrap_err();
    assert!(
        matches!(&err, Error::MissingController { controller, .. } if controller == "hugetlb"),
        "{err}"
    );

    let t = FakeV2::new(true);
    let cg = v2_cgroup(&t);
    add_files(
        &t.root.path().join("c"),
        &[
            ("hugetlb.2MB.max", "max\n"),
            ("hugetlb.2MB.rsvd.max", "max\n"),
            ("hugetlb.1GB.max", "max\n"),
        ],
    );
    cg.apply(&limits).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("cgroup.subtree_control", "+hugetlb"),
            ("c/hugetlb.2MB.max", "1073741824"),
            ("c/hugetlb.2MB.rsvd.max", "1073741824"),
            ("c/hugetlb.1GB.max", "max"),
        ])
    );
}

#[test]
fn network_is_v1_only() {
    let r = network(Some(0x0010_0001), &[("eth0", 5), ("lo", 2)]);
    let t = FakeV1::all(true);
    let cg = v1_cgroup(&t);
    cg.apply(&r).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("net_cls,net_prio/c/net_cls.classid", "1048577"),
            ("net_cls,net_prio/c/net_prio.ifpriomap", "eth0 5"),
            ("net_cls,net_prio/c/net_prio.ifpriomap", "lo 2"),
        ])
    );

    let t = FakeV2::new(true);
    let cg = v2_cgroup(&t);
    cg.apply(&r).unwrap();
    assert!(writes(t.root.path()).is_empty());
}

#[test]
fn rdma_on_both_versions() {
    let r = rdma(&[
        ("mlx5_0", Some(3), Some(1000)),
        ("mlx4_1", None, Some(10)),
        ("none_0", None, None),
    ]);
    let t = FakeV1::all(true);
    let cg = v1_cgroup(&t);
    cg.apply(&r).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("rdma/c/rdma.max", "mlx4_1 hca_object=10"),
            ("rdma/c/rdma.max", "mlx5_0 hca_handle=3 hca_object=1000"),
        ])
    );
    assert!(cg.apply(&rdma(&[("bad name", Some(1), None)])).is_err());

    let t = FakeV2::new(true);
    let cg = v2_cgroup(&t);
    add_files(&t.root.path().join("c"), &[("rdma.max", "")]);
    cg.apply(&r).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            // The fake root offers no rdma controller, so none is enabled.
            ("c/rdma.max", "mlx4_1 hca_object=10"),
            ("c/rdma.max", "mlx5_0 hca_handle=3 hca_object=1000"),
        ])
    );
}

#[test]
fn v1_device_rules_become_lines_in_order() {
    let t = FakeV1::all(true);
    let cg = v1_cgroup(&t);
    cg.apply(&devices(vec![
        rule(false, 'a', None, None, "rwm"),
        rule(true, 'c', Some(1), Some(3), "mwr"),
        rule(true, 'c', None, None, "m"),
        rule(true, 'b', Some(8), None, "r"),
        rule(false, 'c', Some(1), Some(3), "w"),
        rule(true, 'c', Some(136), Some(-1), ""),
    ]))
    .unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("devices/c/devices.deny", "a *:* rwm"),
            ("devices/c/devices.allow", "c 1:3 rwm"),
            ("devices/c/devices.allow", "c *:* m"),
            ("devices/c/devices.allow", "b 8:* r"),
            ("devices/c/devices.deny", "c 1:3 w"),
            ("devices/c/devices.allow", "c 136:* rwm"),
        ])
    );

    // A list not starting with an `a` rule starts from deny-all; one
    // starting with allow-all keeps it.
    cg.apply(&devices(vec![rule(true, 'c', Some(1), Some(5), "rw")]))
        .unwrap();
    cg.apply(&devices(vec![
        rule(true, 'a', Some(1), None, "r"),
        rule(false, 'b', None, None, "m"),
    ]))
    .unwrap();
    // An empty list changes nothing.
    cg.apply(&devices(vec![])).unwrap();
    assert_eq!(
        writes(t.root.path()),
        expect(&[
            ("devices/c/devices.deny", "a *:* rwm"),
            ("devices/c/devices.allow", "c 1:5 rw"),
            ("devices/c/devices.allow", "a *:* rwm"),
            ("devices/c/devices.deny", "b *:* m"),
        ])
    );

    // Invalid rules are refused before anything is written.
    for bad in [
        rule(true, 'u', Some(1), Some(3), "r"),
        rule(true, 'p', None, None, "r"),
        rule(true, 'c', Some(1), Some(3), "rx"),
        rule(true, 'c', Some(1 << 40), Some(3), "r"),
    ] {
        let mut r = devices(vec![rule(false, 'a', None, None, "rwm"), bad]);
        r.set_pids(super::v1::pids(5).pids().to_owned());
        let err = cg.apply(&r).unwrap_err();
        assert!(matches!(err, Error::InvalidResource { .. }), "{err}");
    }
    assert!(writes(t.root.path()).is_empty());
}

#[test]
fn v2_device_rules_attach_a_program_each_apply() {
    let t = FakeV2::new(true);
    let cg = v2_cgroup(&t);
    let r = devices(vec![
        rule(true, 'a', None, None, "rwm"),
        rule(false, 'c', Some(1), Some(3), "r"),
    ]);
    cg.apply(&r).unwrap();
    cg.apply(&r).unwrap();
    let listing = "\
ldxw r2, [r1+0]
mov32 r3, r2
rsh32 r3, 16
and32 r2, 0xffff
ldxw r4, [r1+4]
ldxw r5, [r1+8]
jne r2, 2, +7
jne r4, 1, +6
jne r5, 3, +5
mov32 r0, r3
and32 r0, 0x2
jeq r0, 0, +2
mov32 r0, 0
exit
mov32 r0, 1
exit
";
    let file = format!("c/{DEVICE_PROGRAM}");
    assert_eq!(
        writes(t.root.path()),
        expect(&[(&file, listing), (&file, listing)])
    );
    cg.apply(&devices(vec![])).unwrap();
    assert!(writes(t.root.path()).is_empty());
}

#[test]
fn unified_on_v1_names_the_keys() {
    let t = FakeV1::new(true);
    let cg = v1_cgroup(&t);
    let mut r = LinuxResources::default();
    r.set_unified(Some(
        [
            ("memory.high".to_owned(), "1".to_owned()),
            ("io.max".to_owned(), "x".to_owned()),
        ]
        .into(),
    ));
    r.set_pids(super::v1::pids(5).pids().to_owned());
    let err = cg.apply(&r).unwrap_err().to_string();
    assert!(
        err.contains("cannot write \"io.max\", \"memory.high\""),
        "{err}"
    );
    assert!(writes(t.root.path()).is_empty());
}
