//! The rules that place an OCI `linux.cgroupsPath` in a hierarchy, and the
//! calling process's own cgroups (`/proc/self/cgroup`) that relative paths
//! hang from.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::sys;

/// Where the components of a parsed cgroups path start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// At the root of each hierarchy.
    Root,
    /// At the calling process's own cgroup in each hierarchy.
    Own,
}

/// A validated cgroups path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CgroupPath {
    pub(crate) anchor: Anchor,
    /// Non-empty directory names, none of them `.` or `..`.
    pub(crate) components: Vec<String>,
}

/// Parses `linux.cgroupsPath`.
///
/// * `/a/b` is absolute: relative to each hierarchy's root.
/// * `a/b` is relative: below the calling process's own cgroup.
/// * `slice:prefix:name` is the systemd form, placed without systemd at
///   `/<slice>/<prefix>-<name>.scope` (`system.slice` when the slice is
///   empty, `<name>.scope` when the prefix is, and `<name>` itself when it is
///   a `.slice`).
///
/// Repeated slashes and `.` are ignored; `..` and a path naming no cgroup
/// (empty, or the root) are rejected.
pub(crate) fn parse(path: &str) -> Result<CgroupPath> {
    let invalid = |reason: &str| Error::InvalidPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if path.contains('\0') || path.contains('\n') {
        return Err(invalid("contains a NUL or newline character"));
    }
    if path.contains(':') {
        let parts: Vec<&str> = path.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(invalid(
                "a systemd cgroups path has exactly three fields, slice:prefix:name",
            ));
        };
        for part in [slice, prefix, name] {
            if part.contains('/') || part == "." || part == ".." {
                return Err(invalid(
                    "systemd fields cannot contain '/' or be '.' or '..'",
                ));
            }
        }
        if name.is_empty() {
            return Err(invalid("the systemd unit name is empty"));
        }
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        let unit = if name.ends_with(".slice") {
            name.to_owned()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        return Ok(CgroupPath {
            anchor: Anchor::Root,
            components: vec![slice.to_owned(), unit],
        });
    }
    let anchor = if path.starts_with('/') {
        Anchor::Root
    } else {
        Anchor::Own
    };
    let mut components = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(invalid("'..' components are not allowed")),
            c => components.push(c.to_owned()),
        }
    }
    if components.is_empty() {
        return Err(invalid("it names no cgroup below the root"));
    }
    Ok(CgroupPath { anchor, components })
}

/// The calling process's own cgroups, as `/proc/self/cgroup` lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnCgroups {
    v1: BTreeMap<String, String>,
    v2: Option<String>,
}

impl OwnCgroups {
    /// Reads `/proc/self/cgroup`.
    pub fn current() -> Result<OwnCgroups> {
        let path = Path::new("/proc/self/cgroup");
        let text = sys::read(path)?;
        Self::parse(&text).ok_or_else(|| Error::Parse {
            path: path.to_owned(),
            content: text,
        })
    }

    /// Parses the text of a `/proc/<pid>/cgroup` file: lines of
    /// `id:controllers:path`, where v1 lines list comma-separated controllers
    /// (or `name=...`) and the v2 line has id 0 and no controllers.
    pub fn parse(text: &str) -> Option<OwnCgroups> {
        let mut own = OwnCgroups::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return None;
            };
            if !path.starts_with('/') {
                return None;
            }
            if id == "0" && controllers.is_empty() {
                own.v2 = Some(path.to_owned());
            } else {
                for c in controllers.split(',').filter(|c| !c.is_empty()) {
                    own.v1.insert(c.to_owned(), path.to_owned());
                }
            }
        }
        Some(own)
    }

    /// The own cgroup in the v1 hierarchy holding `controller`.
    pub fn v1(&self, controller: &str) -> Option<&str> {
        self.v1.get(controller).map(String::as_str)
    }

    /// The own cgroup in the unified (v2) hierarchy.
    pub fn v2(&self) -> Option<&str> {
        self.v2.as_deref()
    }
}

/// The components of cgroup `cgroup` below a mount whose root is
/// `mount_root` (both as the kernel prints them, starting with `/`).
///
/// A cgroup outside the mounted sub-tree cannot be reached through the
/// mount; it is then taken as the mount's own root, with a warning.
pub(crate) fn below_mount(cgroup: &str, mount_root: &str) -> Vec<String> {
    let split = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect()
    };
    let cgroup = split(cgroup);
    let root = split(mount_root);
    match cgroup.strip_prefix(root.as_slice()) {
        Some(rest) => rest.to_vec(),
        None => {
            log::warn!(
                "own cgroup /{} is outside the mounted cgroup /{}; using the mount's root",
                cgroup.join("/"),
                root.join("/")
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(p: &CgroupPath) -> String {
        p.components.join("/")
    }

    #[test]
    fn absolute_and_relative() {
        let p = parse("/a/b").unwrap();
        assert_eq!(p.anchor, Anchor::Root);
        assert_eq!(comps(&p), "a/b");
        let p = parse("a//./b/").unwrap();
        assert_eq!(p.anchor, Anchor::Own);
        assert_eq!(comps(&p), "a/b");
    }

    #[test]
    fn systemd_form() {
        let p = parse("system.slice:cri:abc").unwrap();
        assert_eq!(p.anchor, Anchor::Root);
        assert_eq!(comps(&p), "system.slice/cri-abc.scope");
        assert_eq!(
            comps(&parse(":cri:abc").unwrap()),
            "system.slice/cri-abc.scope"
        );
        assert_eq!(comps(&parse("u.slice::abc").unwrap()), "u.slice/abc.scope");
        assert_eq!(
            comps(&parse("u.slice:x:k.slice").unwrap()),
            "u.slice/k.slice"
        );
    }

    #[test]
    fn rejected() {
        for bad in [
            "", "/", "//", ".", "/a/../b", "..", "a/..", "s:p:", "s:p", "a:b:c:d", "s/x:p:n",
            "s:..:n", "a\nb",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidPath { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn own_cgroups() {
        let own = OwnCgroups::parse(
            "12:cpu,cpuacct:/user/a\n4:memory:/m\n1:name=systemd:/s\n0::/unified\n",
        )
        .unwrap();
        assert_eq!(own.v1("cpu"), Some("/user/a"));
        assert_eq!(own.v1("cpuacct"), Some("/user/a"));
        assert_eq!(own.v1("memory"), Some("/m"));
        assert_eq!(own.v1("name=systemd"), Some("/s"));
        assert_eq!(own.v1("pids"), None);
        assert_eq!(own.v2(), Some("/unified"));
        assert_eq!(OwnCgroups::parse("garbage"), None);
        // Paths may contain ':'.
        let own = OwnCgroups::parse("0::/a:b\n").unwrap();
        assert_eq!(own.v2(), Some("/a:b"));
    }

    #[test]
    fn below_mount_root() {
        assert_eq!(below_mount("/docker/abc/x", "/docker/abc"), ["x"]);
        assert_eq!(below_mount("/x/y", "/"), ["x", "y"]);
        assert!(below_mount("/", "/").is_empty());
        assert!(below_mount("/other", "/docker/abc").is_empty());
    }
}
