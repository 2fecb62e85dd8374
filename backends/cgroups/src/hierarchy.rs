//! Where the cgroup controllers of this host live, and which cgroup version
//! they speak.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys;

/// The conventional mount point of the cgroup filesystems.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Mount options of a cgroup v1 filesystem that do not name a controller.
const NON_CONTROLLER_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "none",
    "all",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
    "nosuid",
    "nodev",
    "noexec",
    "relatime",
];

/// The cgroup interface generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// cgroup v1: one hierarchy per controller (or group of comounted
    /// controllers).
    V1,
    /// cgroup v2: one unified hierarchy.
    V2,
}

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Where it is mounted.
    pub(crate) point: PathBuf,
    /// Which cgroup of the hierarchy appears at `point` (the mountinfo root
    /// field; `/` unless a sub-tree was bind-mounted or a namespace applies).
    pub(crate) root: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    V1(BTreeMap<String, Mount>),
    V2(Mount),
}

/// Where the cgroup controllers live.
///
/// On v1 this maps each controller, and each named hierarchy such as
/// `name=systemd`, to its mount; comounted controllers (`cpu,cpuacct`) share
/// one. On v2 it is the root of the unified hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    kind: Kind,
}

impl Hierarchy {
    /// Inspects the running host: cgroup v2 if [`CGROUP_ROOT`] is itself a
    /// cgroup2 filesystem, otherwise cgroup v1 with the controller mounts
    /// listed in `/proc/self/mountinfo`.
    pub fn detect() -> Result<Hierarchy> {
        let root = Path::new(CGROUP_ROOT);
        let st = nix::sys::statfs::statfs(root)
            .map_err(|e| Error::NoCgroupFs(format!("statfs {CGROUP_ROOT}: {}", e.desc())))?;
        let mountinfo = sys::read(Path::new("/proc/self/mountinfo"))?;
        if st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            let mount_root = parse_mountinfo(&mountinfo)
                .into_iter()
                .rfind(|m| m.fstype == "cgroup2" && m.point == root)
                .map_or_else(|| "/".to_owned(), |m| m.root);
            return Ok(Hierarchy {
                kind: Kind::V2(Mount {
                    point: root.to_owned(),
                    root: mount_root,
                }),
            });
        }
        Self::from_mountinfo(&mountinfo)
    }

    /// Builds a cgroup v1 hierarchy from the text of a
    /// `/proc/<pid>/mountinfo` file.
    ///
    /// When a controller is mounted more than once, a mount below
    /// [`CGROUP_ROOT`] wins over one elsewhere, and a later mount on the same
    /// point wins over the earlier one it hides.
    pub fn from_mountinfo(mountinfo: &str) -> Result<Hierarchy> {
        let base = Path::new(CGROUP_ROOT);
        let mut mounts: BTreeMap<String, Mount> = BTreeMap::new();
        for entry in parse_mountinfo(mountinfo) {
            if entry.fstype != "cgroup" {
                continue;
            }
            for controller in entry.super_options.split(',').filter(|o| is_controller(o)) {
                let new = Mount {
                    point: entry.point.clone(),
                    root: entry.root.clone(),
                };
                match mounts.get(controller) {
                    Some(old)
                        if old.point != new.point
                            && (old.point.starts_with(base) || !new.point.starts_with(base)) => {}
                    _ => {
                        mounts.insert(controller.to_owned(), new);
                    }
                }
            }
        }
        if mounts.is_empty() {
            return Err(Error::NoCgroupFs(
                "no cgroup v1 hierarchy is mounted".to_owned(),
            ));
        }
        Ok(Hierarchy {
            kind: Kind::V1(mounts),
        })
    }

    /// A cgroup v1 hierarchy with the given controller mount points, each
    /// showing its hierarchy's root cgroup. Comounted controllers map to the
    /// same path.
    pub fn v1(mounts: BTreeMap<String, PathBuf>) -> Hierarchy {
        Hierarchy {
            kind: Kind::V1(
                mounts
                    .into_iter()
                    .map(|(c, point)| {
                        (
                            c,
                            Mount {
                                point,
                                root: "/".to_owned(),
                            },
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// A cgroup v2 hierarchy whose root cgroup is the directory `root`.
    pub fn v2(root: PathBuf) -> Hierarchy {
        Hierarchy {
            kind: Kind::V2(Mount {
                point: root,
                root: "/".to_owned(),
            }),
        }
    }

    /// The cgroup version.
    pub fn version(&self) -> Version {
        match self.kind {
            Kind::V1(_) => Version::V1,
            Kind::V2(_) => Version::V2,
        }
    }

    /// The controllers available: on v1 every mounted controller and named
    /// hierarchy; on v2 those the root's `cgroup.controllers` lists.
    pub fn controllers(&self) -> Result<Vec<String>> {
        match &self.kind {
            Kind::V1(mounts) => Ok(mounts.keys().cloned().collect()),
            Kind::V2(m) => Ok(sys::read(&m.point.join("cgroup.controllers"))?
                .split_whitespace()
                .map(str::to_owned)
                .collect()),
        }
    }

    /// The directory of the hierarchy's root (as mounted) that holds
    /// `controller`; on v2 the unified root for any controller.
    pub fn mount_point(&self, controller: &str) -> Option<&Path> {
        match &self.kind {
            Kind::V1(mounts) => mounts.get(controller).map(|m| m.point.as_path()),
            Kind::V2(m) => Some(&m.point),
        }
    }

    /// The v1 mounts, grouped: each distinct mount with its controllers.
    pub(crate) fn v1_groups(&self) -> Option<Vec<(Mount, Vec<String>)>> {
        let Kind::V1(mounts) = &self.kind else {
            return None;
        };
        let mut groups: Vec<(Mount, Vec<String>)> = Vec::new();
        for (controller, mount) in mounts {
            match groups.iter_mut().find(|(m, _)| m.point == mount.point) {
                Some((_, cs)) => cs.push(controller.clone()),
                None => groups.push((mount.clone(), vec![controller.clone()])),
            }
        }
        Some(groups)
    }

    /// The v2 unified mount.
    pub(crate) fn v2_mount(&self) -> Option<&Mount> {
        match &self.kind {
            Kind::V1(_) => None,
            Kind::V2(m) => Some(m),
        }
    }

    #[cfg(test)]
    pub(crate) fn v1_with_roots(mounts: BTreeMap<String, (PathBuf, String)>) -> Hierarchy {
        Hierarchy {
            kind: Kind::V1(
                mounts
                    .into_iter()
                    .map(|(c, (point, root))| (c, Mount { point, root }))
                    .collect(),
            ),
        }
    }
}

fn is_controller(option: &str) -> bool {
    if option.starts_with("name=") {
        return option.len() > "name=".len();
    }
    !option.is_empty() && !option.contains('=') && !NON_CONTROLLER_OPTIONS.contains(&option)
}

/// One line of a mountinfo file, the fields this crate uses.
struct MountInfo {
    root: String,
    point: PathBuf,
    fstype: String,
    super_options: String,
}

fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            if sep < 6 || fields.len() < sep + 4 {
                return None;
            }
            Some(MountInfo {
                root: unescape(fields[3]),
                point: PathBuf::from(unescape(fields[4])),
                fstype: fields[sep + 1].to_owned(),
                super_options: fields[sep + 3].to_owned(),
            })
        })
        .collect()
}

/// Undoes the octal escapes (`\040` for a space) the kernel uses in
/// mountinfo paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(value) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 80 0:31 / /run/c/rootfs/sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
91 80 0:34 / /mnt/with\\040space rw,relatime - cgroup cgroup rw,pids
";

    #[test]
    fn mountinfo_controllers_and_roots() {
        let h = Hierarchy::from_mountinfo(HOST).unwrap();
        assert_eq!(h.version(), Version::V1);
        assert_eq!(
            h.controllers().unwrap(),
            [
                "cpu",
                "cpuacct",
                "freezer",
                "memory",
                "name=systemd",
                "pids"
            ]
        );
        assert_eq!(
            h.mount_point("cpu"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(h.mount_point("cpuacct"), h.mount_point("cpu"));
        // The host mount wins over a container's view of the same hierarchy.
        assert_eq!(
            h.mount_point("memory"),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(h.mount_point("pids"), Some(Path::new("/mnt/with space")));
        let groups = h.v1_groups().unwrap();
        let memory = groups.iter().find(|(_, c)| c == &["memory"]).unwrap();
        assert_eq!(memory.0.root, "/docker/abc");
        let cpu = groups
            .iter()
            .find(|(_, c)| c.contains(&"cpu".to_owned()))
            .unwrap();
        assert_eq!(cpu.1, ["cpu", "cpuacct"]);
        assert_eq!(groups.len(), 5);
    }

    #[test]
    fn mountinfo_without_cgroup_v1_is_an_error() {
        let text = "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert!(matches!(
            Hierarchy::from_mountinfo(text),
            Err(Error::NoCgroupFs(_))
        ));
    }

    #[test]
    fn later_mount_on_same_point_wins() {
        let text = "\
1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
2 1 0:1 /sub /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
        let h = Hierarchy::from_mountinfo(text).unwrap();
        assert_eq!(h.v1_groups().unwrap()[0].0.root, "/sub");
    }

    #[test]
    fn constructors() {
        let h = Hierarchy::v2(PathBuf::from("/x"));
        assert_eq!(h.version(), Version::V2);
        assert_eq!(h.mount_point("memory"), Some(Path::new("/x")));
        let h = Hierarchy::v1(BTreeMap::from([("pids".to_owned(), PathBuf::from("/p"))]));
        assert_eq!(h.version(), Version::V1);
        assert_eq!(h.mount_point("memory"), None);
        assert_eq!(h.controllers().unwrap(), ["pids"]);
    }

    #[test]
    fn unescape_octal() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("tail\\"), "tail\\");
        assert_eq!(unescape("bad\\09x"), "bad\\09x");
    }
}
