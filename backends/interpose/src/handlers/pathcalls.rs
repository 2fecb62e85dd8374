//! Calls that name paths and that the kernel runs once the policy allows
//! them: `access`, `readlink`, `execve` and the calls that change the
//! filesystem (`unlink`, `rename`, `mkdir`, `chmod`, `utimensat`, …).
//!
//! These are judged and then continued (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`):
//! the kernel re-reads the path from the caller's memory, so another thread
//! of the caller could swap it after the check. That is safe only because
//! of the kernel-level backstop the runtime sets up: every hidden path is
//! masked by a mount (`/dev/null` or an empty read-only tmpfs) and every
//! read-only path is a read-only bind mount, so a swapped path still cannot
//! reach a hidden file or change a read-only one. The check gives the
//! policy's own errno (`ENOENT`, `EROFS`) and the audit log; the backstop
//! makes it hold.

use std::sync::Arc;

use crate::calls::Call;
use crate::handlers::{Ctx, Reply};
use crate::notify::Answer;
use crate::paths::{self, judge, Unresolved};
use crate::target::Thread;

/// A path argument: the index of its dirfd argument (none: relative to the
/// cwd) and of the path, and whether the call changes what it names.
#[derive(Clone, Copy)]
struct PathArg {
    dirfd: Option<usize>,
    path: usize,
    mutates: bool,
}

const fn at(dirfd: usize, path: usize, mutates: bool) -> PathArg {
    PathArg {
        dirfd: Some(dirfd),
        path,
        mutates,
    }
}

const fn cwd(path: usize, mutates: bool) -> PathArg {
    PathArg {
        dirfd: None,
        path,
        mutates,
    }
}

/// The path arguments of `call`.
fn path_args(ctx: &Ctx<'_>) -> Vec<PathArg> {
    use Call::*;
    // access(2) with W_OK on a read-only path fails with EROFS natively.
    let writes = |mode: u64| mode & libc::W_OK as u64 != 0;
    match ctx.call {
        Access => vec![cwd(0, writes(ctx.arg(1)))],
        Faccessat | Faccessat2 => vec![at(0, 1, writes(ctx.arg(2)))],
        Readlink => vec![cwd(0, false)],
        Readlinkat => vec![at(0, 1, false)],
        Execve => vec![cwd(0, false)],
        Execveat => vec![at(0, 1, false)],
        Unlink | Rmdir | Mkdir | Mknod | Chmod | Chown | Lchown | Truncate | Utime | Utimes
        | Setxattr | Lsetxattr | Removexattr | Lremovexattr => vec![cwd(0, true)],
        Unlinkat | Mkdirat | Mknodat | Fchmodat | Fchmodat2 | Fchownat | Utimensat | Futimesat => {
            vec![at(0, 1, true)]
        }
        // Renaming or linking from a read-only path would change it or
        // give it a writable name.
        Rename | Link => vec![cwd(0, true), cwd(1, true)],
        Renameat | Renameat2 | Linkat => vec![at(0, 1, true), at(2, 3, true)],
        Symlink => vec![cwd(1, true)],
        Symlinkat => vec![at(1, 2, true)],
        _ => Vec::new(),
    }
}

/// Judges the call's paths: refuses it if the policy does, else lets the
/// kernel run it.
pub(crate) fn check(ctx: &Ctx<'_>) -> Reply {
    match judge_args(ctx) {
        Ok(()) => Reply::Continue,
        Err(reply) => reply,
    }
}

/// `execve`/`execveat`: refused on a hidden path; otherwise the cache is
/// dropped (the new program may run with other credentials) and the kernel
/// runs it.
pub(crate) fn exec(ctx: &Ctx<'_>) -> Reply {
    if let Err(reply) = judge_args(ctx) {
        return reply;
    }
    ctx.shared.threads.forget_all();
    Reply::Continue
}

/// Judges every path argument; `Err` with the reply if one is refused or
/// unreadable.
fn judge_args(ctx: &Ctx<'_>) -> Result<(), Reply> {
    let mut thread: Option<Arc<Thread>> = None;
    for arg in path_args(ctx) {
        let addr = ctx.arg(arg.path);
        if addr == 0 {
            // No path: the call works on its fd (utimensat, futimesat), or
            // the kernel fails it with EFAULT.
            continue;
        }
        let raw = paths::read_arg(ctx.tid(), addr).map_err(Reply::from)?;
        if raw.is_empty() {
            // AT_EMPTY_PATH works on the fd; otherwise ENOENT from the kernel.
            continue;
        }
        let dirfd = arg.dirfd.map_or(libc::AT_FDCWD, |i| ctx.int_arg(i));
        if thread.is_none() && raw[0] != b'/' {
            thread = match ctx.thread().map_err(Reply::from)? {
                Some(t) => Some(t),
                None => return Err(Reply::Gone),
            };
        }
        let path = match thread.as_deref() {
            Some(t) => paths::resolve(ctx.tid(), t, dirfd, &raw),
            None => Ok(paths::normalize(b"/", &raw)),
        };
        let path = match path {
            Ok(path) => path,
            Err(Unresolved::Fails(errno)) => return Err(Reply::Emulated(Answer::Error(errno))),
            Err(Unresolved::Outside) => continue,
        };
        if let Some(errno) = judge(&ctx.shared.policy, &path).refusal(arg.mutates) {
            return Err(ctx.deny_path(errno, &path));
        }
    }
    Ok(())
}
