//! The handlers of the mediated syscalls, and what they share: the call
//! being handled and the reply it gets.

mod dirs;
mod files;
mod net;
mod pathcalls;
mod system;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use crate::calls::Call;
use crate::creds::Own;
use crate::notify::{Answer, Notification};
use crate::supervisor::Shared;
use crate::target::Thread;

/// How a call is answered, and how it is counted.
pub(crate) enum Reply {
    /// The supervisor performed or answered the call.
    Emulated(Answer),
    /// The supervisor opened a file for the caller: the fd is installed in
    /// the caller as the call's result, close-on-exec if `cloexec`.
    Fd {
        /// The file.
        fd: OwnedFd,
        /// Whether the caller asked for close-on-exec.
        cloexec: bool,
    },
    /// The kernel runs the call as made.
    Continue,
    /// The policy refuses the call.
    Denied {
        /// The errno of the refusal.
        errno: i32,
        /// The path or address refused, for the audit log.
        what: String,
    },
    /// The handler answered the call itself, having performed it.
    Answered,
    /// The call is no longer pending (the caller was interrupted or is
    /// gone): nothing to answer.
    Gone,
}

impl From<Answer> for Reply {
    fn from(answer: Answer) -> Reply {
        match answer {
            Answer::Continue => Reply::Continue,
            other => Reply::Emulated(other),
        }
    }
}

/// One call being handled by a worker.
pub(crate) struct Ctx<'a> {
    /// What the workers share.
    pub shared: &'a Shared,
    /// The worker's own identity.
    pub own: &'a Own,
    /// The call.
    pub n: Notification,
    /// Which syscall it is.
    pub call: Call,
}

impl Ctx<'_> {
    /// The calling thread's id.
    pub(crate) fn tid(&self) -> i32 {
        self.n.tid
    }

    /// Argument `i` of the call.
    pub(crate) fn arg(&self, i: usize) -> u64 {
        self.n.args[i]
    }

    /// Argument `i` as a C `int` (the kernel ignores the upper half).
    pub(crate) fn int_arg(&self, i: usize) -> i32 {
        self.n.args[i] as i32
    }

    /// The calling thread, or `None` when the call is no longer pending.
    pub(crate) fn thread(&self) -> Result<Option<Arc<Thread>>, Answer> {
        self.shared
            .threads
            .get(&self.shared.listener, self.n.id, self.n.tid)
            .map_err(|e| {
                log::warn!("reading thread {} from /proc: {e}", self.n.tid);
                Answer::Error(libc::EPERM)
            })
    }

    /// Whether the call is still pending; checked after reading the
    /// caller's memory and before acting on it.
    pub(crate) fn still_pending(&self) -> bool {
        self.shared.listener.is_valid(self.n.id)
    }

    /// A refusal of the call on `path` with `errno`.
    pub(crate) fn deny_path(&self, errno: i32, path: &Path) -> Reply {
        Reply::Denied {
            errno,
            what: path.display().to_string(),
        }
    }
}

/// Handles one call.
pub(crate) fn handle(ctx: &Ctx<'_>) -> Reply {
    use Call::*;
    match ctx.call {
        Open | Openat | Openat2 | Creat => files::open(ctx),
        Stat | Lstat | Newfstatat | Statx => files::stat(ctx),
        Getdents64 => dirs::getdents64(ctx),
        Uname => system::uname(ctx),
        Sysinfo => system::sysinfo(ctx),
        SchedGetaffinity => system::sched_getaffinity(ctx),
        Connect | Bind | Sendto | Sendmsg | Sendmmsg => net::handle(ctx),
        Execve | Execveat => pathcalls::exec(ctx),
        call if call.invalidates() => {
            ctx.shared.threads.forget_all();
            Reply::Continue
        }
        _ => pathcalls::check(ctx),
    }
}
