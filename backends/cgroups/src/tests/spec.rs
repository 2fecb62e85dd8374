//! Builders for the parts of `linux.resources` the tests use.

use std::collections::HashMap;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit,
    LinuxInterfacePriority, LinuxMemory, LinuxNetwork, LinuxRdmaBuilder, LinuxResources,
    LinuxThrottleDevice, LinuxThrottleDeviceBuilder, LinuxWeightDevice, LinuxWeightDeviceBuilder,
};

/// A device rule; `kind` is `a`, `b` or `c`, numbers `None` for `*`.
pub(crate) fn rule(
    allow: bool,
    kind: char,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let typ = match kind {
        'a' => LinuxDeviceType::A,
        'b' => LinuxDeviceType::B,
        'c' => LinuxDeviceType::C,
        'u' => LinuxDeviceType::U,
        _ => LinuxDeviceType::P,
    };
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow)
        .set_typ(Some(typ))
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_owned()));
    r
}

/// Resources with only these device rules.
pub(crate) fn devices(rules: Vec<LinuxDeviceCgroup>) -> LinuxResources {
    let mut r = LinuxResources::default();
    r.set_devices(Some(rules));
    r
}

/// Resources with only this memory section.
pub(crate) fn with_memory(m: LinuxMemory) -> LinuxResources {
    let mut r = LinuxResources::default();
    r.set_memory(Some(m));
    r
}

/// Resources with only this cpu section.
pub(crate) fn with_cpu(c: LinuxCpu) -> LinuxResources {
    let mut r = LinuxResources::default();
    r.set_cpu(Some(c));
    r
}

pub(crate) fn throttle(major: i64, minor: i64, rate: u64) -> LinuxThrottleDevice {
    LinuxThrottleDeviceBuilder::default()
        .major(major)
        .minor(minor)
        .rate(rate)
        .build()
        .unwrap()
}

pub(crate) fn weight_device(
    major: i64,
    minor: i64,
    weight: Option<u16>,
    leaf: Option<u16>,
) -> LinuxWeightDevice {
    let mut b = LinuxWeightDeviceBuilder::default()
        .major(major)
        .minor(minor);
    if let Some(w) = weight {
        b = b.weight(w);
    }
    if let Some(l) = leaf {
        b = b.leaf_weight(l);
    }
    b.build().unwrap()
}

/// Block IO with every kind of setting: weight 500, leaf weight 300, two
/// weight devices, and throttles on 8:0 (all four) and 8:16 (write bps).
pub(crate) fn full_block_io() -> LinuxResources {
    let mut b = LinuxBlockIo::default();
    b.set_weight(Some(500))
        .set_leaf_weight(Some(300))
        .set_weight_device(Some(vec![
            weight_device(8, 0, Some(200), Some(100)),
            weight_device(8, 16, Some(1000), None),
        ]))
        .set_throttle_read_bps_device(Some(vec![throttle(8, 0, 1_048_576)]))
        .set_throttle_write_bps_device(Some(vec![throttle(8, 16, 2_097_152), throttle(8, 0, 0)]))
        .set_throttle_read_iops_device(Some(vec![throttle(8, 0, 100)]))
        .set_throttle_write_iops_device(Some(vec![throttle(8, 0, 50)]));
    let mut r = LinuxResources::default();
    r.set_block_io(Some(b));
    r
}

pub(crate) fn hugepages(limits: &[(&str, i64)]) -> LinuxResources {
    let mut r = LinuxResources::default();
    r.set_hugepage_limits(Some(
        limits
            .iter()
            .map(|(size, limit)| {
                let mut h = LinuxHugepageLimit::default();
                h.set_page_size((*size).to_owned()).set_limit(*limit);
                h
            })
            .collect(),
    ));
    r
}

pub(crate) fn network(class_id: Option<u32>, prios: &[(&str, u32)]) -> LinuxResources {
    let mut n = LinuxNetwork::default();
    n.set_class_id(class_id).set_priorities(Some(
        prios
            .iter()
            .map(|(name, p)| {
                let mut i = LinuxInterfacePriority::default();
                i.set_name((*name).to_owned()).set_priority(*p);
                i
            })
            .collect(),
    ));
    let mut r = LinuxResources::default();
    r.set_network(Some(n));
    r
}

pub(crate) fn rdma(devices: &[(&str, Option<u32>, Option<u32>)]) -> LinuxResources {
    let mut map = HashMap::new();
    for (dev, handles, objects) in devices {
        let mut b = LinuxRdmaBuilder::default();
        if let Some(h) = handles {
            b = b.hca_handles(*h);
        }
        if let Some(o) = objects {
            b = b.hca_objects(*o);
        }
        map.insert((*dev).to_owned(), b.build().unwrap());
    }
    let mut r = LinuxResources::default();
    r.set_rdma(Some(map));
    r
}
