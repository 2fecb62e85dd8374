//! A fake cgroupfs in a temporary directory, with a stand-in kernel that
//! fills new cgroup directories with interface files.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::sys::fake::{self, Installed};
use crate::Hierarchy;

/// The v1 hierarchies of the fake tree: directory name and controllers.
pub(crate) const V1_MOUNTS: &[(&str, &[&str])] = &[
    ("cpu,cpuacct", &["cpu", "cpuacct"]),
    ("cpuset", &["cpuset"]),
    ("freezer", &["freezer"]),
    ("memory", &["memory"]),
    ("pids", &["pids"]),
    ("systemd", &["name=systemd"]),
];

/// Further v1 hierarchies, for [`FakeV1::all`].
pub(crate) const V1_MORE_MOUNTS: &[(&str, &[&str])] = &[
    ("blkio", &["blkio"]),
    ("devices", &["devices"]),
    ("hugetlb", &["hugetlb"]),
    ("net_cls,net_prio", &["net_cls", "net_prio"]),
    ("rdma", &["rdma"]),
];

/// What the v2 root offers, in the kernel's order.
pub(crate) const V2_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids";

pub(crate) struct FakeV1 {
    pub(crate) root: TempDir,
    mounts: Vec<(&'static str, &'static [&'static str])>,
    _kernel: Installed,
}

impl FakeV1 {
    /// A v1 tree with the hierarchies of [`V1_MOUNTS`]; `memsw` says
    /// whether the kernel accounts swap.
    pub(crate) fn new(memsw: bool) -> FakeV1 {
        Self::with_mounts(memsw, V1_MOUNTS.to_vec())
    }

    /// A v1 tree with [`V1_MOUNTS`] and [`V1_MORE_MOUNTS`].
    pub(crate) fn all(memsw: bool) -> FakeV1 {
        Self::with_mounts(memsw, [V1_MOUNTS, V1_MORE_MOUNTS].concat())
    }

    fn with_mounts(memsw: bool, mounts: Vec<(&'static str, &'static [&'static str])>) -> FakeV1 {
        let root = tempfile::tempdir().unwrap();
        for (dir, _) in &mounts {
            fs::create_dir(root.path().join(dir)).unwrap();
        }
        let base = root.path().to_owned();
        let populate = move |dir: &Path| populate_v1(&base, dir, memsw);
        for (dir, _) in &mounts {
            populate(&root.path().join(dir));
        }
        fs::write(root.path().join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
        fs::write(root.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        let kernel = fake::install(populate);
        FakeV1 {
            root,
            mounts,
            _kernel: kernel,
        }
    }

    pub(crate) fn mount(&self, controller: &str) -> PathBuf {
        let (dir, _) = self
            .mounts
            .iter()
            .find(|(_, cs)| cs.contains(&controller))
            .unwrap();
        self.root.path().join(dir)
    }

    pub(crate) fn hierarchy(&self) -> Hierarchy {
        let mut mounts = BTreeMap::new();
        for (dir, controllers) in &self.mounts {
            for c in *controllers {
                mounts.insert((*c).to_owned(), self.root.path().join(dir));
            }
        }
        Hierarchy::v1(mounts)
    }
}

fn populate_v1(base: &Path, dir: &Path, memsw: bool) {
    let mount = dir.strip_prefix(base).unwrap().components().next().unwrap();
    let mut files: Vec<(&str, &str)> = vec![("cgroup.procs", ""), ("tasks", "")];
    match mount.as_os_str().to_str().unwrap() {
        "memory" => {
            files.extend([
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.soft_limit_in_bytes", "9223372036854771712\n"),
                ("memory.usage_in_bytes", "0\n"),
                ("memory.kmem.limit_in_bytes", "9223372036854771712\n"),
                ("memory.kmem.tcp.limit_in_bytes", "9223372036854771712\n"),
                ("memory.swappiness", "60\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
                ),
                ("cgroup.event_control", ""),
            ]);
            if memsw {
                files.push(("memory.memsw.limit_in_bytes", "9223372036854771712\n"));
            }
        }
        "cpu,cpuacct" => files.extend([
            ("cpu.shares", "1024\n"),
            ("cpu.cfs_quota_us", "-1\n"),
            ("cpu.cfs_period_us", "100000\n"),
            ("cpu.cfs_burst_us", "0\n"),
            ("cpu.rt_period_us", "1000000\n"),
            ("cpu.rt_runtime_us", "0\n"),
            ("cpu.idle", "0\n"),
        ]),
        "cpuset" => files.extend([("cpuset.cpus", "\n"), ("cpuset.mems", "\n")]),
        "pids" => files.push(("pids.max", "max\n")),
        "freezer" => files.push(("freezer.state", "THAWED\n")),
        "blkio" => files.extend([
            ("blkio.weight", "500\n"),
            ("blkio.weight_device", ""),
            ("blkio.leaf_weight", "500\n"),
            ("blkio.leaf_weight_device", ""),
            ("blkio.throttle.read_bps_device", ""),
            ("blkio.throttle.write_bps_device", ""),
            ("blkio.throttle.read_iops_device", ""),
            ("blkio.throttle.write_iops_device", ""),
        ]),
        "devices" => files.extend([
            ("devices.allow", ""),
            ("devices.deny", ""),
            ("devices.list", "a *:* rwm\n"),
        ]),
        "hugetlb" => files.extend([
            ("hugetlb.2MB.limit_in_bytes", "9223372036854771712\n"),
            ("hugetlb.2MB.rsvd.limit_in_bytes", "9223372036854771712\n"),
            ("hugetlb.1GB.limit_in_bytes", "9223372036854771712\n"),
        ]),
        "net_cls,net_prio" => {
            files.extend([("net_cls.classid", "0\n"), ("net_prio.ifpriomap", "lo 0\n")])
        }
        "rdma" => files.push(("rdma.max", "")),
        _ => {}
    }
    for (name, content) in files {
        fs::write(dir.join(name), content).unwrap();
    }
}

pub(crate) struct FakeV2 {
    pub(crate) root: TempDir,
    _kernel: Installed,
}

impl FakeV2 {
    /// A v2 tree; `swap` says whether the kernel accounts swap.
    pub(crate) fn new(swap: bool) -> FakeV2 {
        let root = tempfile::tempdir().unwrap();
        let populate = move |dir: &Path| populate_v2(dir, swap);
        fs::write(root.path().join("cgroup.procs"), "").unwrap();
        fs::write(root.path().join("cgroup.controllers"), V2_CONTROLLERS).unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        let kernel = fake::install(populate);
        FakeV2 {
            root,
            _kernel: kernel,
        }
    }

    pub(crate) fn hierarchy(&self) -> Hierarchy {
        Hierarchy::v2(self.root.path().to_owned())
    }
}

/// Fills a new v2 cgroup: the core files, and those of the controllers its
/// parent enabled.
fn populate_v2(dir: &Path, swap: bool) {
    let parent = dir.parent().unwrap();
    let enabled = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap();
    let enabled: Vec<&str> = enabled
        .split_whitespace()
        .map(|c| c.trim_start_matches('+'))
        .collect();
    let mut files: Vec<(&str, &str)> = vec![
        ("cgroup.procs", ""),
        ("cgroup.subtree_control", ""),
        ("cgroup.freeze", "0\n"),
        ("cgroup.events", "populated 0\nfrozen 0\n"),
        ("cgroup.kill", ""),
    ];
    for c in &enabled {
        match *c {
            "memory" => {
                files.extend([
                    ("memory.max", "max\n"),
                    ("memory.low", "0\n"),
                    ("memory.current", "0\n"),
                    (
                        "memory.events",
                        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
                    ),
                ]);
                if swap {
                    files.push(("memory.swap.max", "max\n"));
                }
            }
            "cpu" => files.extend([
                ("cpu.weight", "100\n"),
                ("cpu.max", "max 100000\n"),
                ("cpu.max.burst", "0\n"),
                ("cpu.idle", "0\n"),
            ]),
            "cpuset" => files.extend([("cpuset.cpus", "\n"), ("cpuset.mems", "\n")]),
            "pids" => files.push(("pids.max", "max\n")),
            _ => {}
        }
    }
    let controllers = enabled.join(" ");
    files.push(("cgroup.controllers", &controllers));
    for (name, content) in files {
        fs::write(dir.join(name), content).unwrap();
    }
}

/// Creates interface files in `dir`, as the kernel does when a controller
/// is enabled above it.
pub(crate) fn add_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        fs::write(dir.join(name), content).unwrap();
    }
}

/// The writes recorded since the last call, as (path below `root`, value).
pub(crate) fn writes(root: &Path) -> Vec<(String, String)> {
    fake::take_journal()
        .into_iter()
        .map(|(p, v)| {
            (
                p.strip_prefix(root).unwrap().to_str().unwrap().to_owned(),
                v,
            )
        })
        .collect()
}

/// Builds the expected writes list from string pairs.
pub(crate) fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(p, v)| ((*p).to_owned(), (*v).to_owned()))
        .collect()
}

pub(crate) fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).unwrap()
}
