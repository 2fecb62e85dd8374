//! Path resolution that cannot leave the container's root.
//!
//! Every mount target, device node and masked path is opened with
//! `openat2(RESOLVE_IN_ROOT)`, so a symlink in the image (say `/proc` pointing
//! at a host path) resolves inside the rootfs instead of redirecting a mount
//! onto the host. The opened descriptor is then used through
//! `/proc/self/fd/N`, so what was checked is what gets mounted on.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// How many dangling symlinks `ensure` follows before giving up, as the
/// kernel's own limit on symlinks in one lookup.
const MAX_SYMLINKS: u32 = 40;

/// A directory that path lookups are confined to.
pub(crate) struct Root {
    fd: OwnedFd,
}

/// What to create at a path that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A directory.
    Dir,
    /// An empty regular file (to bind-mount a file onto).
    File,
}

impl Root {
    /// Opens `path` as the root of later lookups.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = open_plain(path, libc::O_PATH | libc::O_DIRECTORY)?;
        Ok(Root { fd })
    }

    /// Opens `path`, taken as absolute inside the root, with `O_PATH`.
    pub fn open_path(&self, path: &Path) -> io::Result<OwnedFd> {
        self.openat2(path, libc::O_PATH)
    }

    /// Opens `path` inside the root with the given flags.
    pub fn openat2(&self, path: &Path, flags: i32) -> io::Result<OwnedFd> {
        let relative = relative(path);
        let c_path = cstring(&relative)?;
        // SAFETY: open_how is a plain C struct for which all-zero is valid.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: `c_path` and `how` outlive the call, the size matches the
        // struct passed, and the returned descriptor is checked before use.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.fd.as_raw_fd(),
                c_path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// Makes sure `path` exists inside the root, creating missing parent
    /// directories and the last component as `kind`; returns an `O_PATH` handle.
    /// A dangling symlink on the way gets its target created, inside the root.
    pub fn ensure(&self, path: &Path, kind: Kind) -> io::Result<OwnedFd> {
        self.ensure_within(path, kind, MAX_SYMLINKS)
    }

    fn ensure_within(&self, path: &Path, kind: Kind, links_left: u32) -> io::Result<OwnedFd> {
        match self.open_path(path) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
            Err(_) => {}
        }
        let mut prefix = PathBuf::from("/");
        let relative_path = relative(path);
        let components: Vec<_> = relative_path.components().collect();
        for (i, component) in components.iter().enumerate() {
            let Component::Normal(name) = component else {
                continue;
            };
            let parent = prefix.clone();
            prefix.push(name);
            match self.open_path(&prefix) {
                Ok(_) => continue,
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
                Err(_) => {}
            }
            let last = i + 1 == components.len();
            let dir = self.openat2(&parent, libc::O_PATH | libc::O_DIRECTORY)?;
            let c_name = cstring(Path::new(name))?;
            let rc = if last && kind == Kind::File {
                // SAFETY: `dir` is a valid directory descriptor and `c_name` a
                // NUL-terminated name without slashes; the result is checked.
                let fd = unsafe {
                    libc::openat(
                        dir.as_raw_fd(),
                        c_name.as_ptr(),
                        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    )
                };
                if fd >= 0 {
                    // SAFETY: `fd` was just returned by openat and is ours to close.
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                }
                fd
            } else {
                // SAFETY: as above; mkdirat only reads the name.
                unsafe { libc::mkdirat(dir.as_raw_fd(), c_name.as_ptr(), 0o755) }
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(e);
                }
                // Something is there but does not resolve: a dangling symlink.
                if self.open_path(&prefix).is_err() {
                    if links_left == 0 {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = std::fs::read_link(fd_path(&dir).join(name))?;
                    let target = if target.is_absolute() {
                        target
                    } else {
                        parent.join(target)
                    };
                    let wanted = if last { kind } else { Kind::Dir };
                    self.ensure_within(&target, wanted, links_left - 1)?;
                }
            }
        }
        self.open_path(path)
    }

    /// Creates a node (device, FIFO) at `path`, replacing nothing.
    pub fn mknod(&self, path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
        let (dir, name) = self.parent_of(path)?;
        // SAFETY: `dir` is a directory descriptor and `name` a NUL-terminated
        // single component; the result is checked.
        let rc = unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, dev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Creates a symlink at `path` pointing to `target`; an existing entry is left alone.
    pub fn symlink(&self, target: &str, path: &Path) -> io::Result<()> {
        let (dir, name) = self.parent_of(path)?;
        let c_target = cstring(Path::new(target))?;
        // SAFETY: all pointers are NUL-terminated strings that outlive the call.
        let rc = unsafe { libc::symlinkat(c_target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The parent directory of `path` (created if missing) and the last name.
    fn parent_of(&self, path: &Path) -> io::Result<(OwnedFd, CString)> {
        let relative = relative(path);
        let name = relative
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
        let parent = Path::new("/").join(relative.parent().unwrap_or(Path::new("")));
        self.ensure(&parent, Kind::Dir)?;
        let dir = self.openat2(&parent, libc::O_PATH | libc::O_DIRECTORY)?;
        Ok((dir, cstring(Path::new(name))?))
    }
}

/// The `/proc/self/fd/N` path through which a descriptor's file is reached.
pub(crate) fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `path` without its leading `/`; the root itself becomes `.`.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn open_plain(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c_path = cstring(path)?;
    // SAFETY: `c_path` is NUL-terminated and outlives the call; the result is checked.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        // An image whose /proc points at a host directory.
        std::os::unix::fs::symlink(outside.path(), dir.path().join("proc")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        root.ensure(Path::new("/proc/sub"), Kind::Dir).unwrap();
        assert!(
            !outside.path().join("sub").exists(),
            "a directory was created on the host through a symlink"
        );
        // The symlink's target was re-created inside the root instead.
        let inside = dir
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("sub");
        assert!(inside.is_dir());
    }

    #[test]
    fn dotdot_cannot_climb_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("../../../../..", dir.path().join("a/up")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        root.ensure(Path::new("/a/up/made-here"), Kind::File)
            .unwrap();
        assert!(dir.path().join("made-here").is_file());
    }

    #[test]
    fn files_and_nested_directories_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        root.ensure(Path::new("/x/y/z"), Kind::Dir).unwrap();
        root.ensure(Path::new("/top"), Kind::Dir).unwrap();
        assert!(dir.path().join("top").is_dir());
        root.ensure(Path::new("/x/f"), Kind::File).unwrap();
        root.symlink("/proc/self/fd", Path::new("/dev/fd")).unwrap();
        assert!(dir.path().join("x/y/z").is_dir());
        assert!(dir.path().join("x/f").is_file());
        assert_eq!(
            std::fs::read_link(dir.path().join("dev/fd")).unwrap(),
            Path::new("/proc/self/fd")
        );
    }
}
