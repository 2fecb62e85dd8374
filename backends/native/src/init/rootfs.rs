//! Builds the container's filesystem view: the spec's mounts, device nodes,
//! the pivot into the rootfs, and masked and read-only paths.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use super::in_root::{fd_path, Kind, Root};
use super::mount_options::{self, MountOptions};
use super::{InitError, Result};

/// Device nodes every container gets when `/dev` is a fresh tmpfs:
/// (path, major, minor).
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Symlinks every container gets in `/dev`: (path, target).
const DEFAULT_LINKS: [(&str, &str); 6] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/ptmx", "pts/ptmx"),
    ("/dev/core", "/proc/kcore"),
];

/// Detaches the new mount namespace from the host's and makes the rootfs a
/// mount point of its own, as pivot_root requires.
pub(crate) fn prepare(spec: &Spec, rootfs: &Path) -> Result<()> {
    let propagation = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .map(|p| {
            mount_options::propagation(&p).ok_or_else(|| {
                InitError::msg(format!("linux.rootfsPropagation: unknown value {p:?}"))
            })
        })
        .transpose()?
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .map_err(|e| InitError::sys("setting the propagation of /", e))?;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| InitError::sys(format!("bind-mounting {} onto itself", rootfs.display()), e))?;
    Ok(())
}

/// Performs every mount of the spec inside `rootfs`, in order.
pub(crate) fn mount_all(
    spec: &Spec,
    bundle: &Path,
    rootfs: &Path,
    cgroup_dirs: &[(String, PathBuf)],
) -> Result<()> {
    let root = Root::open(rootfs)
        .map_err(|e| InitError::io(format!("opening {}", rootfs.display()), e))?;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        mount_one(&root, bundle, m, cgroup_dirs)
            .map_err(|e| e.context(format!("mounts[{i}] ({})", m.destination().display())))?;
    }
    Ok(())
}

fn mount_one(
    root: &Root,
    bundle: &Path,
    m: &Mount,
    cgroup_dirs: &[(String, PathBuf)],
) -> Result<()> {
    let options = mount_options::parse(m.options().as_deref().unwrap_or_default());
    let fstype = m.typ().as_deref().unwrap_or("");
    let destination = m.destination();
    if options.is_bind() || fstype == "bind" {
        let source = m
            .source()
            .as_ref()
            .ok_or_else(|| InitError::msg("a bind mount needs a source"))?;
        let source = if source.is_absolute() {
            source.clone()
        } else {
            bundle.join(source)
        };
        let meta = std::fs::metadata(&source)
            .map_err(|e| InitError::io(format!("source {}", source.display()), e))?;
        let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
        bind(root, &source, destination, kind, &options)?;
    } else if fstype == "cgroup" || fstype == "cgroup2" {
        mount_cgroups(root, destination, &options, cgroup_dirs)?;
    } else {
        // Still names the covered directory after the mount: the source of `tmpcopyup`.
        let target = ensure(root, destination, Kind::Dir)?;
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(fstype));
        let data = (!options.data.is_empty()).then_some(options.data.as_str());
        mount(
            Some(&source),
            &fd_path(&target),
            Some(fstype),
            options.flags,
            data,
        )
        .map_err(|e| InitError::sys(format!("mounting {fstype} {}", source.display()), e))?;
        if options.copy_up {
            let mounted = reopen(root, destination)?;
            copy_tree(&fd_path(&target), &fd_path(&mounted))
                .map_err(|e| InitError::io("tmpcopyup: copying what the tmpfs covers", e))?;
        }
        apply_propagation(root, destination, &options)?;
    }
    set_recursive_attributes(root, destination, &options)
}

/// Applies the recursive options (`rro`, `rnosuid`, …) to the mount at
/// `destination` and every mount below it.
fn set_recursive_attributes(root: &Root, destination: &Path, options: &MountOptions) -> Result<()> {
    if options.recursive_set == 0 && options.recursive_clear == 0 {
        return Ok(());
    }
    /// struct mount_attr of mount_setattr(2).
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: options.recursive_set,
        attr_clr: options.recursive_clear,
        propagation: 0,
        userns_fd: 0,
    };
    let mounted = reopen(root, destination)?;
    // SAFETY: the descriptor is open, the empty path is NUL-terminated, and
    // `attr` is a valid mount_attr whose size is passed along; the result is checked.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mounted.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(InitError::io(
            "setting recursive mount attributes",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Copies a directory tree, keeping modes, owners and symlinks.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let target = to.join(entry.file_name());
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if meta.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else if meta.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&target, Some(meta.uid()), Some(meta.gid()))?;
        if !meta.file_type().is_symlink() {
            std::fs::set_permissions(
                &target,
                std::fs::Permissions::from_mode(meta.mode() & 0o7777),
            )?;
        }
    }
    Ok(())
}

fn ensure(root: &Root, destination: &Path, kind: Kind) -> Result<OwnedFd> {
    root.ensure(destination, kind).map_err(|e| {
        InitError::io(
            format!("creating the mount point {}", destination.display()),
            e,
        )
    })
}

/// Opens what is mounted at `destination` now. A descriptor taken before a
/// mount still names the covered directory, so every step after a mount
/// looks the destination up again.
fn reopen(root: &Root, destination: &Path) -> Result<OwnedFd> {
    root.open_path(destination)
        .map_err(|e| InitError::io(format!("re-opening {}", destination.display()), e))
}

/// Bind-mounts the host path `source` at `destination` inside `root`, then
/// applies the flags a bind mount only takes through a remount.
fn bind(
    root: &Root,
    source: &Path,
    destination: &Path,
    kind: Kind,
    options: &MountOptions,
) -> Result<()> {
    let target = ensure(root, destination, kind)?;
    let flags = options.flags & (MsFlags::MS_BIND | MsFlags::MS_REC) | MsFlags::MS_BIND;
    mount(
        Some(source),
        &fd_path(&target),
        None::<&str>,
        flags,
        None::<&str>,
    )
    .map_err(|e| InitError::sys(format!("bind-mounting {}", source.display()), e))?;
    let extra = options.remount_flags();
    if !extra.is_empty() {
        let mounted = reopen(root, destination)?;
        mount(
            None::<&str>,
            &fd_path(&mounted),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra,
            None::<&str>,
        )
        .map_err(|e| {
            InitError::sys(format!("remounting {} with {extra:?}", source.display()), e)
        })?;
    }
    apply_propagation(root, destination, options)
}

fn apply_propagation(root: &Root, destination: &Path, options: &MountOptions) -> Result<()> {
    if options.propagation.is_empty() {
        return Ok(());
    }
    let mounted = reopen(root, destination)?;
    for flags in &options.propagation {
        mount(
            None::<&str>,
            &fd_path(&mounted),
            None::<&str>,
            *flags,
            None::<&str>,
        )
        .map_err(|e| InitError::sys(format!("setting propagation {flags:?}"), e))?;
    }
    Ok(())
}

/// Shows the container its own cgroups: on cgroup v2 the container's directory
/// itself; on v1 a tmpfs with one bind mount per controller.
fn mount_cgroups(
    root: &Root,
    destination: &Path,
    options: &MountOptions,
    dirs: &[(String, PathBuf)],
) -> Result<()> {
    let base = options.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let bind_options = MountOptions {
        flags: MsFlags::MS_BIND | base | (options.flags & MsFlags::MS_RDONLY),
        ..Default::default()
    };
    if let [(name, dir)] = dirs {
        if name.is_empty() {
            return bind(root, dir, destination, Kind::Dir, &bind_options);
        }
    }
    let target = ensure(root, destination, Kind::Dir)?;
    mount(
        Some("tmpfs"),
        &fd_path(&target),
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .map_err(|e| InitError::sys("mounting the cgroup tmpfs", e))?;
    for (name, dir) in dirs {
        bind(root, dir, &destination.join(name), Kind::Dir, &bind_options)?;
    }
    if options.flags.contains(MsFlags::MS_RDONLY) {
        let mounted = reopen(root, destination)?;
        mount(
            None::<&str>,
            &fd_path(&mounted),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
            None::<&str>,
        )
        .map_err(|e| InitError::sys("making the cgroup tmpfs read-only", e))?;
    }
    Ok(())
}

/// Creates the default device nodes and links (when `/dev` is a tmpfs of the
/// spec) and the spec's own `linux.devices`. In a user namespace, where
/// mknod is not allowed, the host's nodes are bind-mounted instead.
pub(crate) fn create_devices(spec: &Spec, rootfs: &Path, in_user_ns: bool) -> Result<()> {
    let root = Root::open(rootfs).map_err(|e| InitError::io("opening the rootfs", e))?;
    let fresh_dev = spec
        .mounts()
        .iter()
        .flatten()
        .any(|m| m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs"));
    if fresh_dev {
        for (path, major, minor) in DEFAULT_DEVICES {
            if in_user_ns {
                bind_host_node(&root, Path::new(path))?;
            } else {
                make_node(
                    &root,
                    Path::new(path),
                    libc::S_IFCHR | 0o666,
                    major,
                    minor,
                    0,
                    0,
                )?;
            }
        }
        for (path, target) in DEFAULT_LINKS {
            root.symlink(target, Path::new(path))
                .map_err(|e| InitError::io(format!("creating the symlink {path}"), e))?;
        }
    }
    let devices = spec.linux().as_ref().and_then(|l| l.devices().clone());
    for (i, device) in devices.iter().flatten().enumerate() {
        let created = if in_user_ns {
            bind_host_node(&root, device.path())
        } else {
            create_device(&root, device)
        };
        created.map_err(|e| e.context(format!("linux.devices[{i}]")))?;
    }
    Ok(())
}

/// Makes the host's node at `path` appear at the same path in the container.
fn bind_host_node(root: &Root, path: &Path) -> Result<()> {
    let options = MountOptions {
        flags: MsFlags::MS_BIND,
        ..Default::default()
    };
    bind(root, path, path, Kind::File, &options)
        .map_err(|e| e.context(format!("binding the host's {}", path.display())))
}

fn create_device(root: &Root, device: &LinuxDevice) -> Result<()> {
    let kind = match device.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => return Err(InitError::msg("type \"a\" is not a device node")),
    };
    let mode = device.file_mode().unwrap_or(0o666) & 0o7777;
    make_node(
        root,
        device.path(),
        kind | mode,
        device.major() as u64,
        device.minor() as u64,
        device.uid().unwrap_or(0),
        device.gid().unwrap_or(0),
    )
}

fn make_node(
    root: &Root,
    path: &Path,
    mode: u32,
    major: u64,
    minor: u64,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let context = || format!("creating the device node {}", path.display());
    match root.mknod(path, mode, libc::makedev(major as u32, minor as u32)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(InitError::io(context(), e)),
    }
    let node = root
        .open_path(path)
        .map_err(|e| InitError::io(context(), e))?;
    // chmod again: mknod's mode is filtered by the umask.
    std::fs::set_permissions(
        fd_path(&node),
        std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
    )
    .map_err(|e| InitError::io(context(), e))?;
    nix::unistd::chown(&fd_path(&node), Some(uid.into()), Some(gid.into()))
        .map_err(|e| InitError::sys(context(), e))?;
    Ok(())
}

/// Makes `rootfs` the root of the mount namespace and lets go of the old root.
pub(crate) fn pivot(rootfs: &Path) -> Result<()> {
    nix::unistd::chdir(rootfs)
        .map_err(|e| InitError::sys(format!("chdir {}", rootfs.display()), e))?;
    let old_root =
        std::fs::File::open("/").map_err(|e| InitError::io("opening the old root", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| InitError::sys("pivot_root", e))?;
    // The old root is now stacked under the new one: detach it.
    nix::unistd::fchdir(&old_root).map_err(|e| InitError::sys("fchdir to the old root", e))?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| InitError::sys("making the old root a slave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| InitError::sys("detaching the old root", e))?;
    nix::unistd::chdir("/").map_err(|e| InitError::sys("chdir /", e))?;
    Ok(())
}

/// Applies `linux.maskedPaths`, `linux.readonlyPaths` and `root.readonly`,
/// after the pivot.
pub(crate) fn restrict(spec: &Spec) -> Result<()> {
    let root = Root::open(Path::new("/")).map_err(|e| InitError::io("opening /", e))?;
    let linux = spec.linux().as_ref();
    for path in linux
        .and_then(|l| l.masked_paths().clone())
        .iter()
        .flatten()
    {
        mask(&root, Path::new(path)).map_err(|e| e.context(format!("masking {path}")))?;
    }
    for path in linux
        .and_then(|l| l.readonly_paths().clone())
        .iter()
        .flatten()
    {
        read_only(&root, Path::new(path))
            .map_err(|e| e.context(format!("making {path} read-only")))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| InitError::sys("making the root read-only", e))?;
    }
    Ok(())
}

fn mask(root: &Root, path: &Path) -> Result<()> {
    let target = match root.open_path(path) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(InitError::io("opening", e)),
    };
    let is_dir = std::fs::metadata(fd_path(&target))
        .map(|m| m.is_dir())
        .unwrap_or(false);
    let result = if is_dir {
        mount(
            Some("tmpfs"),
            &fd_path(&target),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    result.map_err(|e| InitError::sys("mounting over it", e))
}

fn read_only(root: &Root, path: &Path) -> Result<()> {
    let target = match root.open_path(path) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(InitError::io("opening", e)),
    };
    mount(
        Some(&fd_path(&target)),
        &fd_path(&target),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| InitError::sys("bind-mounting it onto itself", e))?;
    let mounted = reopen(root, path)?;
    mount(
        None::<&str>,
        &fd_path(&mounted),
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| InitError::sys("remounting it read-only", e))
}
