//! Turning a path argument into the absolute path it names in the target's
//! view, and judging that path by the policy.
//!
//! Paths are normalised lexically (`.`, `..` and repeated slashes), as the
//! policy's paths are written; the supervisor then opens exactly the
//! normalised path below the target's root (`RESOLVE_IN_ROOT`), so what was
//! judged is what is opened. A symlink inside the container that leads into
//! a hidden or read-only path is resolved by the kernel inside the
//! target's root, where the masking mounts of those paths are (the
//! kernel-level backstop the runtime sets up).

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::memory;
use crate::notify::Answer;
use crate::target::Thread;
use crate::Policy;

/// `AT_FDCWD`: relative to the current directory.
const AT_FDCWD: i32 = libc::AT_FDCWD;

/// Why a path argument cannot be judged, and how the call is answered.
#[derive(Debug)]
pub(crate) enum Unresolved {
    /// The call fails as the kernel would fail it (bad pointer, name too
    /// long, bad dirfd).
    Fails(i32),
    /// The base directory lies outside the target's root (an fd received
    /// from outside, or a deleted directory): the path does not name
    /// anything the policy speaks of, and the kernel resolves it for the
    /// target. Hidden and read-only paths are all inside the root.
    Outside,
}

/// The path named by `dirfd` and `raw` for thread `tid`, absolute and
/// normalised in the target's view.
pub(crate) fn resolve(
    tid: i32,
    thread: &Thread,
    dirfd: i32,
    raw: &[u8],
) -> Result<PathBuf, Unresolved> {
    if raw.first() == Some(&b'/') {
        return Ok(normalize(b"/", raw));
    }
    let link = if dirfd == AT_FDCWD {
        format!("/proc/{tid}/cwd")
    } else if dirfd < 0 {
        return Err(Unresolved::Fails(libc::EBADF));
    } else {
        format!("/proc/{tid}/fd/{dirfd}")
    };
    let base = match std::fs::read_link(&link) {
        Ok(base) => base,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && dirfd != AT_FDCWD => {
            return Err(Unresolved::Fails(libc::EBADF))
        }
        Err(_) => return Err(Unresolved::Outside),
    };
    let base = base.as_os_str().as_bytes();
    if base.first() != Some(&b'/') {
        // A socket, pipe or anonymous inode: not a directory.
        return Err(Unresolved::Fails(libc::ENOTDIR));
    }
    if base.ends_with(b" (deleted)") {
        return Err(Unresolved::Outside);
    }
    let inside = strip_root(&thread.root_path, base).ok_or(Unresolved::Outside)?;
    Ok(normalize(inside, raw))
}

/// `path` (as `/proc` shows it to the supervisor) below `root`, as an
/// absolute path in the target's view; `None` if it is not below `root`.
fn strip_root<'a>(root: &[u8], path: &'a [u8]) -> Option<&'a [u8]> {
    if root == b"/" {
        return Some(path);
    }
    let rest = path.strip_prefix(root)?;
    match rest.first() {
        None => Some(b"/"),
        Some(b'/') => Some(rest),
        Some(_) => None,
    }
}

/// `rel` against the absolute `base`, with `.`, `..` and empty components
/// resolved lexically; `..` stops at `/`. An absolute `rel` ignores `base`.
pub(crate) fn normalize(base: &[u8], rel: &[u8]) -> PathBuf {
    let mut out = PathBuf::from("/");
    let joined = Path::new(OsStr::from_bytes(base)).join(OsStr::from_bytes(rel));
    for c in joined.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Reads the path argument at `addr` of thread `tid`.
pub(crate) fn read_arg(tid: i32, addr: u64) -> Result<Vec<u8>, Answer> {
    memory::read_cstring(tid, addr, memory::PATH_MAX - 1)
        .map_err(|e| Answer::Error(e.raw_os_error().unwrap_or(libc::EFAULT)))
}

/// `abs` as a path relative to the target's root, for `openat2` with
/// `RESOLVE_IN_ROOT` on the root fd.
pub(crate) fn in_root(abs: &Path) -> CString {
    let rel = abs.as_os_str().as_bytes();
    let rel = rel.strip_prefix(b"/").unwrap_or(rel);
    let rel = if rel.is_empty() { b".".as_slice() } else { rel };
    // Built from a C string read up to its NUL: no NUL inside.
    CString::new(rel).unwrap_or_default()
}

/// Whether `path` is `prefix` or below it.
fn under(path: &Path, prefix: &Path) -> bool {
    path.starts_with(prefix)
}

/// What the policy says about a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The path does not exist for the container.
    Hidden,
    /// The path may not be changed.
    ReadOnly,
    /// No rule speaks of the path.
    Free,
}

impl Verdict {
    /// The errno refusing an access with or without `mutation` intent, if
    /// refused.
    pub(crate) fn refusal(self, mutation: bool) -> Option<i32> {
        match self {
            Verdict::Hidden => Some(libc::ENOENT),
            Verdict::ReadOnly if mutation => Some(libc::EROFS),
            _ => None,
        }
    }
}

/// Judges `path`; hidden wins over read-only.
pub(crate) fn judge(policy: &Policy, path: &Path) -> Verdict {
    if policy.hidden.iter().any(|h| under(path, h)) {
        Verdict::Hidden
    } else if policy.read_only.iter().any(|r| under(path, r)) {
        Verdict::ReadOnly
    } else {
        Verdict::Free
    }
}

/// Whether `path` is inside `/proc`, whose files the supervisor never opens
/// for the target: what they show depends on who opens them (`self`, the
/// pid namespace, ptrace access checks), so the kernel resolves them for
/// the target itself.
pub(crate) fn in_proc(path: &Path) -> bool {
    under(path, Path::new("/proc"))
}
