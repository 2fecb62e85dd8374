//! The file broker: `open`, `openat`, `openat2`, `creat` and the `stat`
//! family, performed by the supervisor with the caller's credentials below
//! the caller's root.
//!
//! # Where the broker lets the kernel run the call (CONTINUE) and why
//!
//! Only after the policy has allowed the path (hidden paths are refused
//! with `ENOENT`, writes below read-only paths with `EROFS`, before any of
//! these):
//!
//! * Paths in `/proc`, magic links (`/proc/<pid>/fd/N`, `exe`, `cwd`,
//!   `root`, `/dev/fd/N`, which `RESOLVE_NO_MAGICLINKS` refuses with
//!   `ELOOP`) and any open that ends up on procfs through a symlink: what
//!   procfs shows depends on who opens it (`self`, the pid namespace,
//!   ptrace checks), so only the kernel can resolve it for the caller.
//! * Opens and stats that fail with `ENOENT` or `ELOOP` because the path
//!   goes through a symlink into `/proc` (`/dev/stdin`, `/dev/fd/N`,
//!   `/etc/mtab`): `self` there resolves to nothing for the supervisor,
//!   which is not in the caller's pid namespace (or to the supervisor, when
//!   it is), and the magic links behind it are refused. Other failures are
//!   answered with the broker's own errno, never continued.
//! * `openat2` with `resolve` flags: they constrain resolution relative to
//!   the caller's dirfd, which the broker's own `RESOLVE_IN_ROOT` cannot
//!   combine with.
//! * Empty paths (`AT_EMPTY_PATH`): the call works on an fd the caller
//!   already holds.
//! * A relative path whose cwd or dirfd lies outside the caller's root (an
//!   fd passed in from outside): no hidden or read-only path is there.
//!
//! Each is safe because the kernel-level backstop masks every hidden path
//! with a mount and makes every read-only path a read-only bind mount: a
//! path swapped by another thread after the check, or a magic link, still
//! cannot reach a hidden file or write a read-only one.
//!
//! # Where a brokered open differs from the kernel's own
//!
//! * It always has `O_NOCTTY`: opening a terminal never makes it the
//!   caller's controlling terminal (nor the supervisor's).
//! * The creation mode is masked with the caller's umask before the open.
//!   In a directory with a default ACL, where the kernel ignores the
//!   umask, the file gets the masked mode.
//! * `..` is resolved lexically, as the policy's paths are: `a/../b` where
//!   `a` is a symlink names `b` next to the link, not next to its target.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::calls::Call;
use crate::handlers::{system, Ctx, Reply};
use crate::memory;
use crate::notify::Answer;
use crate::paths::{self, judge, Unresolved};
use crate::target::Thread;

/// `PROC_SUPER_MAGIC`: the `f_type` of procfs.
const PROC_SUPER_MAGIC: libc::c_long = 0x9fa0;

/// Open flags the broker passes on; `openat2` refuses unknown bits, which
/// `open` and `openat` ignore.
const KNOWN_FLAGS: i32 = libc::O_ACCMODE
    | libc::O_CREAT
    | libc::O_EXCL
    | libc::O_NOCTTY
    | libc::O_TRUNC
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DSYNC
    | libc::O_ASYNC
    | libc::O_DIRECT
    | libc::O_LARGEFILE
    | libc::O_DIRECTORY
    | libc::O_NOFOLLOW
    | libc::O_NOATIME
    | libc::O_CLOEXEC
    | libc::O_SYNC
    | libc::O_PATH
    | libc::O_TMPFILE;

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenHow {
    /// Open flags.
    pub flags: u64,
    /// Creation mode.
    pub mode: u64,
    /// `RESOLVE_*` flags.
    pub resolve: u64,
}

/// What an open asks for.
struct OpenRequest {
    dirfd: i32,
    path_addr: u64,
    flags: i32,
    mode: u32,
    /// `openat2`'s `resolve` flags; zero for the other calls.
    resolve: u64,
}

impl OpenRequest {
    /// Whether the open may create, write or truncate.
    fn writes(&self) -> bool {
        self.flags & libc::O_PATH == 0
            && (self.flags & libc::O_ACCMODE != libc::O_RDONLY
                || self.flags & (libc::O_CREAT | libc::O_TRUNC) != 0
                || self.flags & libc::O_TMPFILE == libc::O_TMPFILE)
    }

    /// Whether the open takes a mode.
    fn creates(&self) -> bool {
        self.flags & libc::O_CREAT != 0 || self.flags & libc::O_TMPFILE == libc::O_TMPFILE
    }
}

/// Reads the open's arguments.
fn open_request(ctx: &Ctx<'_>) -> Result<OpenRequest, Answer> {
    let req = match ctx.call {
        Call::Open => OpenRequest {
            dirfd: libc::AT_FDCWD,
            path_addr: ctx.arg(0),
            flags: ctx.int_arg(1) & KNOWN_FLAGS,
            mode: ctx.arg(2) as u32,
            resolve: 0,
        },
        Call::Creat => OpenRequest {
            dirfd: libc::AT_FDCWD,
            path_addr: ctx.arg(0),
            flags: libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            mode: ctx.arg(1) as u32,
            resolve: 0,
        },
        Call::Openat => OpenRequest {
            dirfd: ctx.int_arg(0),
            path_addr: ctx.arg(1),
            flags: ctx.int_arg(2) & KNOWN_FLAGS,
            mode: ctx.arg(3) as u32,
            resolve: 0,
        },
        _ => {
            let how = read_open_how(ctx)?;
            if how.flags & !(KNOWN_FLAGS as u64) != 0 || how.flags > u64::from(u32::MAX) {
                return Err(Answer::Error(libc::EINVAL));
            }
            OpenRequest {
                dirfd: ctx.int_arg(0),
                path_addr: ctx.arg(1),
                flags: how.flags as i32,
                mode: how.mode as u32,
                resolve: how.resolve,
            }
        }
    };
    Ok(req)
}

/// `openat2`'s `struct open_how`, checked as the kernel checks its size.
fn read_open_how(ctx: &Ctx<'_>) -> Result<OpenHow, Answer> {
    let size = ctx.arg(3) as usize;
    let known = std::mem::size_of::<OpenHow>();
    if size < known {
        return Err(Answer::Error(libc::EINVAL));
    }
    if size > 4096 {
        return Err(Answer::Error(libc::E2BIG));
    }
    let mut bytes = vec![0u8; size];
    memory::read(ctx.tid(), ctx.arg(2), &mut bytes).map_err(|_| Answer::Error(libc::EFAULT))?;
    if bytes[known..].iter().any(|&b| b != 0) {
        return Err(Answer::Error(libc::E2BIG));
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(w)
    };
    Ok(OpenHow {
        flags: word(0),
        mode: word(1),
        resolve: word(2),
    })
}

/// Where a path argument leads, or how the call is answered without
/// opening anything.
enum Target {
    /// A path in the caller's root, allowed by the policy, and the caller.
    Path(Allowed),
    /// Answer with this.
    Reply(Reply),
}

/// A path argument the policy allows.
struct Allowed {
    /// The path, absolute and normalised in the caller's view.
    path: PathBuf,
    /// Whether the argument ended with a slash (then it must name a
    /// directory, which normalising forgets).
    dir_only: bool,
    /// The caller.
    thread: Arc<Thread>,
}

impl Allowed {
    /// The path relative to the caller's root, for `openat2` on its root
    /// fd, with the trailing slash if the argument had one.
    fn in_root(&self) -> CString {
        let rel = paths::in_root(&self.path);
        if !self.dir_only || rel.as_bytes() == b"." {
            return rel;
        }
        let mut bytes = rel.into_bytes();
        bytes.push(b'/');
        CString::new(bytes).unwrap_or_default()
    }
}

/// Reads, resolves and judges the path argument of an open or stat.
fn target(ctx: &Ctx<'_>, dirfd: i32, addr: u64, writes: bool, beneath: bool) -> Target {
    let raw = match paths::read_arg(ctx.tid(), addr) {
        Ok(raw) => raw,
        Err(answer) => return Target::Reply(answer.into()),
    };
    if raw.is_empty() {
        return Target::Reply(Reply::Continue);
    }
    let thread = match ctx.thread() {
        Ok(Some(thread)) => thread,
        Ok(None) => return Target::Reply(Reply::Gone),
        Err(answer) => return Target::Reply(answer.into()),
    };
    let resolved = if beneath {
        // RESOLVE_BENEATH / RESOLVE_IN_ROOT: the path stays below dirfd,
        // and an absolute path starts there.
        paths::resolve(ctx.tid(), &thread, dirfd, b".").map(|base| {
            base.join(
                paths::normalize(b"/", &raw)
                    .strip_prefix("/")
                    .unwrap_or(Path::new("")),
            )
        })
    } else {
        paths::resolve(ctx.tid(), &thread, dirfd, &raw)
    };
    let path = match resolved {
        Ok(path) => path,
        Err(Unresolved::Fails(errno)) => return Target::Reply(Answer::Error(errno).into()),
        Err(Unresolved::Outside) => return Target::Reply(Reply::Continue),
    };
    if let Some(errno) = judge(&ctx.shared.policy, &path).refusal(writes) {
        return Target::Reply(ctx.deny_path(errno, &path));
    }
    Target::Path(Allowed {
        path,
        dir_only: raw.ends_with(b"/"),
        thread,
    })
}

/// `open`, `openat`, `openat2`, `creat`.
pub(crate) fn open(ctx: &Ctx<'_>) -> Reply {
    let req = match open_request(ctx) {
        Ok(req) => req,
        Err(answer) => return answer.into(),
    };
    let beneath = req.resolve & (libc::RESOLVE_BENEATH | libc::RESOLVE_IN_ROOT) != 0;
    let allowed = match target(ctx, req.dirfd, req.path_addr, req.writes(), beneath) {
        Target::Path(allowed) => allowed,
        Target::Reply(reply) => return reply,
    };
    let (path, thread) = (&allowed.path, &allowed.thread);
    let cloexec = req.flags & libc::O_CLOEXEC != 0;
    if let Some(render) = system::virtual_file(path) {
        if req.writes() {
            return Answer::Error(libc::EACCES).into();
        }
        return match render(ctx) {
            Ok(fd) => Reply::Fd { fd, cloexec },
            Err(e) => {
                log::error!("rendering {}: {e}", path.display());
                Answer::Error(libc::EIO).into()
            }
        };
    }
    if paths::in_proc(path) || req.resolve != 0 {
        return Reply::Continue;
    }
    if !ctx.still_pending() {
        return Reply::Gone;
    }
    let mode = if req.creates() {
        u64::from(req.mode & 0o7777 & !thread.umask)
    } else {
        0
    };
    let how = OpenHow {
        flags: (req.flags | libc::O_CLOEXEC | libc::O_NOCTTY) as u64,
        mode,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    let rel = allowed.in_root();
    let opened = ctx.own.act_as(&thread.creds, || {
        openat2(thread.root.as_raw_fd(), &rel, &how)
    });
    match opened {
        Ok(Ok(fd)) if on_procfs(&fd) => Reply::Continue,
        Ok(Ok(fd)) => Reply::Fd { fd, cloexec },
        Ok(Err(e)) => errno_reply(&e, thread, &rel),
        Err(e) => {
            log::error!("taking the identity of thread {}: {e}", ctx.tid());
            Answer::Error(libc::EPERM).into()
        }
    }
}

/// The reply to an open or stat of `rel` (below the caller's root) that
/// failed with `e`: the error, unless the failure comes from a symlink
/// into `/proc`, which only the kernel can resolve for the caller.
fn errno_reply(e: &io::Error, thread: &Thread, rel: &CStr) -> Reply {
    match e.raw_os_error() {
        Some(errno @ (libc::ENOENT | libc::ELOOP)) if !leads_into_proc(thread, rel) => {
            Answer::Error(errno).into()
        }
        Some(libc::ENOENT | libc::ELOOP) => Reply::Continue,
        Some(errno) => Answer::Error(errno).into(),
        None => Answer::Error(libc::EIO).into(),
    }
}

/// Whether a component of `rel` (below the caller's root) is a symlink
/// into `/proc`, such as `/dev/stdin -> /proc/self/fd/0` or `/etc/mtab ->
/// ../proc/self/mounts`: through it, `self` would name the supervisor (or
/// nothing, outside the caller's pid namespace) and magic links are
/// refused. Walks the components as they are now; a component swapped
/// meanwhile changes nothing, since the caller then gets the broker's own
/// error rather than a continued call.
fn leads_into_proc(thread: &Thread, rel: &CStr) -> bool {
    let bytes = rel.to_bytes();
    let mut end = 0;
    while end < bytes.len() {
        end = bytes[end + 1..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(bytes.len(), |i| end + 1 + i);
        let Ok(prefix) = CString::new(&bytes[..end]) else {
            return false;
        };
        let how = OpenHow {
            flags: (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        };
        let Ok(fd) = openat2(thread.root.as_raw_fd(), &prefix, &how) else {
            return false;
        };
        let mut target = [0u8; 256];
        // SAFETY: readlinkat with an empty path reads the link the O_PATH
        // fd names (EINVAL if it is not a link) into the buffer, at most
        // its size.
        let n = unsafe {
            libc::readlinkat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                target.as_mut_ptr().cast(),
                target.len(),
            )
        };
        if n > 0 {
            let target = &target[..n as usize];
            return target.split(|&b| b == b'/').any(|c| c == b"proc");
        }
    }
    false
}

/// `stat`, `lstat`, `newfstatat`, `statx`: the supervisor opens the path
/// `O_PATH` as the caller, stats it and writes the result back.
///
/// The result is written just after checking that the call is still
/// pending; the filter's `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` keeps a
/// received call pending until it is answered, so only a fatal signal (after
/// which nobody reads the buffer) can end it in between.
pub(crate) fn stat(ctx: &Ctx<'_>) -> Reply {
    let (dirfd, addr, nofollow, buf) = match ctx.call {
        Call::Stat => (libc::AT_FDCWD, ctx.arg(0), false, ctx.arg(1)),
        Call::Lstat => (libc::AT_FDCWD, ctx.arg(0), true, ctx.arg(1)),
        Call::Newfstatat => (
            ctx.int_arg(0),
            ctx.arg(1),
            ctx.int_arg(3) & libc::AT_SYMLINK_NOFOLLOW != 0,
            ctx.arg(2),
        ),
        _ => (
            ctx.int_arg(0),
            ctx.arg(1),
            ctx.int_arg(2) & libc::AT_SYMLINK_NOFOLLOW != 0,
            ctx.arg(4),
        ),
    };
    if addr == 0 {
        // statx and newfstatat take NULL with AT_EMPTY_PATH.
        return Reply::Continue;
    }
    let allowed = match target(ctx, dirfd, addr, false, false) {
        Target::Path(allowed) => allowed,
        Target::Reply(reply) => return reply,
    };
    let (path, thread) = (&allowed.path, &allowed.thread);
    if paths::in_proc(path) {
        return Reply::Continue;
    }
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC | if nofollow { libc::O_NOFOLLOW } else { 0 })
            as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    let rel = allowed.in_root();
    let opened = ctx.own.act_as(&thread.creds, || {
        openat2(thread.root.as_raw_fd(), &rel, &how)
    });
    let fd = match opened {
        Ok(Ok(fd)) if on_procfs(&fd) => return Reply::Continue,
        Ok(Ok(fd)) => fd,
        Ok(Err(e)) => return errno_reply(&e, thread, &rel),
        Err(e) => {
            log::error!("taking the identity of thread {}: {e}", ctx.tid());
            return Answer::Error(libc::EPERM).into();
        }
    };
    let written = if ctx.call == Call::Statx {
        let flags = ctx.int_arg(2) & libc::AT_STATX_SYNC_TYPE;
        let mask = ctx.arg(3) as u32;
        statx_fd(&fd, flags, mask).and_then(|st| {
            if !ctx.still_pending() {
                return Ok(false);
            }
            memory::write_value(ctx.tid(), buf, &st).map(|()| true)
        })
    } else {
        fstat_fd(&fd).and_then(|st| {
            if !ctx.still_pending() {
                return Ok(false);
            }
            memory::write_value(ctx.tid(), buf, &st).map(|()| true)
        })
    };
    match written {
        Ok(true) => Answer::Value(0).into(),
        Ok(false) => Reply::Gone,
        Err(e) => Answer::Error(e.raw_os_error().unwrap_or(libc::EFAULT)).into(),
    }
}

/// `openat2(dirfd, path, how)`.
pub(crate) fn openat2(dirfd: i32, path: &CStr, how: &OpenHow) -> io::Result<OwnedFd> {
    // SAFETY: openat2 reads the NUL-terminated path and the open_how of
    // the given size, which both live across the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether `fd` is a procfs file.
fn on_procfs(fd: &OwnedFd) -> bool {
    // SAFETY: an all-zero statfs is a valid value of the plain struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes one statfs to the pointer, which points at `st`.
    let ret = unsafe { libc::fstatfs(fd.as_fd().as_raw_fd(), &mut st) };
    ret == 0 && st.f_type == PROC_SUPER_MAGIC
}

/// `fstat` of `fd`.
fn fstat_fd(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value of the plain struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstatat with AT_EMPTY_PATH and "" stats the fd itself and
    // writes one stat to the pointer, which points at `st`.
    let ret = unsafe { libc::fstatat(fd.as_raw_fd(), c"".as_ptr(), &mut st, libc::AT_EMPTY_PATH) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// `statx` of `fd` with the caller's sync flags and mask.
fn statx_fd(fd: &OwnedFd, flags: i32, mask: u32) -> io::Result<libc::statx> {
    // SAFETY: an all-zero statx is a valid value of the plain struct.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx with AT_EMPTY_PATH and "" stats the fd itself and
    // writes one statx to the pointer, which points at `st`.
    let ret = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | flags,
            mask,
            &mut st,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}
