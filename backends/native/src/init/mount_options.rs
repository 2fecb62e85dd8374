//! Turns OCI mount options into mount(2) flags, propagation and data.

use nix::mount::MsFlags;

/// `MS_NOSYMFOLLOW`, which the mount flags type does not name.
pub(crate) const NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// A mount's options, split the way mount(2) wants them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MountOptions {
    /// Flags for the mount itself.
    pub flags: MsFlags,
    /// Propagation changes, applied in separate calls after the mount.
    pub propagation: Vec<MsFlags>,
    /// Options the filesystem interprets, joined by commas.
    pub data: String,
    /// `MOUNT_ATTR_*` bits the recursive options (`rro`, `rnosuid`, …) set
    /// on the mount and every mount below it, through mount_setattr(2).
    pub recursive_set: u64,
    /// `MOUNT_ATTR_*` bits the recursive options clear.
    pub recursive_clear: u64,
    /// Whether a tmpfs starts with a copy of what it covers (`tmpcopyup`).
    pub copy_up: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            recursive_set: 0,
            recursive_clear: 0,
            copy_up: false,
        }
    }
}

/// The `MOUNT_ATTR_*` bits of mount_setattr(2).
pub(crate) mod attr {
    /// Read-only.
    pub const RDONLY: u64 = 0x1;
    /// Ignore set-user-id bits.
    pub const NOSUID: u64 = 0x2;
    /// No device files.
    pub const NODEV: u64 = 0x4;
    /// No execution.
    pub const NOEXEC: u64 = 0x8;
    /// The access-time field: all of its values clear these bits first.
    pub const ATIME_MASK: u64 = 0x70;
    /// Access times as `relatime`.
    pub const RELATIME: u64 = 0x0;
    /// No access times.
    pub const NOATIME: u64 = 0x10;
    /// Always update access times.
    pub const STRICTATIME: u64 = 0x20;
    /// No directory access times.
    pub const NODIRATIME: u64 = 0x80;
    /// Do not follow symlinks.
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// The recursive variant of an option: (bits to set, bits to clear).
fn recursive(option: &str) -> Option<(u64, u64)> {
    Some(match option {
        "rro" => (attr::RDONLY, 0),
        "rrw" => (0, attr::RDONLY),
        "rnosuid" => (attr::NOSUID, 0),
        "rsuid" => (0, attr::NOSUID),
        "rnodev" => (attr::NODEV, 0),
        "rdev" => (0, attr::NODEV),
        "rnoexec" => (attr::NOEXEC, 0),
        "rexec" => (0, attr::NOEXEC),
        "rnodiratime" => (attr::NODIRATIME, 0),
        "rdiratime" => (0, attr::NODIRATIME),
        "rrelatime" => (attr::RELATIME, attr::ATIME_MASK),
        "rnoatime" => (attr::NOATIME, attr::ATIME_MASK),
        "rstrictatime" => (attr::STRICTATIME, attr::ATIME_MASK),
        "rnosymfollow" => (attr::NOSYMFOLLOW, 0),
        "rsymfollow" => (0, attr::NOSYMFOLLOW),
        _ => return None,
    })
}

impl MountOptions {
    /// Whether this is a bind mount.
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// Flags that a bind mount can only get through a remount.
    pub fn remount_flags(&self) -> MsFlags {
        self.flags
            & (MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_NOATIME
                | MsFlags::MS_NODIRATIME
                | MsFlags::MS_RELATIME
                | MsFlags::MS_STRICTATIME
                | NOSYMFOLLOW)
    }
}

/// Parses OCI/fstab-style options.
pub(crate) fn parse(options: &[String]) -> MountOptions {
    let mut out = MountOptions::default();
    let mut data = Vec::new();
    for option in options {
        let (set, clear) = match option.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosymfollow" => (NOSYMFOLLOW, MsFlags::empty()),
            "symfollow" => (MsFlags::empty(), NOSYMFOLLOW),
            "tmpcopyup" => {
                out.copy_up = true;
                continue;
            }
            other => {
                if let Some(p) = propagation(other) {
                    out.propagation.push(p);
                } else if let Some((set, clear)) = recursive(other) {
                    out.recursive_set = (out.recursive_set & !clear) | set;
                    out.recursive_clear = (out.recursive_clear & !set) | clear;
                } else {
                    data.push(other);
                }
                continue;
            }
        };
        out.flags.insert(set);
        out.flags.remove(clear);
    }
    out.data = data.join(",");
    out
}

/// The propagation flags an option names, if it names one.
pub(crate) fn propagation(option: &str) -> Option<MsFlags> {
    Some(match option {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_data_are_separated() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(o.propagation.is_empty());
    }

    #[test]
    fn later_options_override_earlier_ones() {
        assert_eq!(opts(&["ro", "rw"]).flags, MsFlags::empty());
        assert_eq!(opts(&["rw", "ro"]).flags, MsFlags::MS_RDONLY);
    }

    #[test]
    fn recursive_options_become_mount_attributes() {
        let o = opts(&[
            "rbind",
            "rro",
            "rnosuid",
            "rnoatime",
            "nosymfollow",
            "tmpcopyup",
        ]);
        assert_eq!(o.recursive_set, attr::RDONLY | attr::NOSUID | attr::NOATIME);
        assert_eq!(o.recursive_clear & attr::ATIME_MASK, attr::ATIME_MASK);
        assert!(o.flags.contains(NOSYMFOLLOW));
        assert!(o.copy_up);
        assert_eq!(o.data, "");
        let o = opts(&["rro", "rrw"]);
        assert_eq!(o.recursive_set & attr::RDONLY, 0);
        assert_eq!(o.recursive_clear & attr::RDONLY, attr::RDONLY);
    }

    #[test]
    fn rbind_is_recursive_bind_and_propagation_is_kept_apart() {
        let o = opts(&["rbind", "ro", "rprivate"]);
        assert!(o.is_bind());
        assert!(o.flags.contains(MsFlags::MS_REC));
        assert_eq!(o.remount_flags(), MsFlags::MS_RDONLY);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert_eq!(o.data, "");
    }
}
