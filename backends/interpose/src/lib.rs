//! The `interpose` isolation class's syscall supervisor.
//!
//! An interpose container runs like a native one, plus a seccomp filter
//! ([`filter`]) that sends a chosen set of syscalls to a supervisor
//! process instead of running them (`SCMP_ACT_NOTIFY`), and refuses a set
//! of dangerous ones outright ([`DENIED_BY_DEFAULT`]). The supervisor
//! ([`Supervisor`]) decides each call by the class's [`Policy`]:
//!
//! * file calls: hidden paths do not exist (`ENOENT`, and directory
//!   listings leave them out), read-only paths cannot change (`EROFS`),
//!   and the supervisor performs opens and stats
//!   itself, below the container's root and with the calling thread's
//!   credentials, injecting the opened fd into the caller;
//! * the system view: `/proc/meminfo`, `/proc/cpuinfo`, `/proc/stat`,
//!   `/proc/uptime`, `/sys/devices/system/cpu/online`, `sysinfo`,
//!   `sched_getaffinity` and `uname` report the container's limits
//!   ([`SystemView`]) rather than the host's;
//! * the network: `connect`, `bind` and sends to an address are judged by
//!   IP address and port ([`NetworkPolicy`]) and performed by the
//!   supervisor on the caller's socket.
//!
//! Denials are logged (rate-limited) and every call is counted
//! ([`Stats`]).
//!
//! # What the runtime must add
//!
//! The supervisor's checks are the first line; the runtime backs them in
//! the kernel: every hidden path is masked by a mount and every read-only
//! path is a read-only bind mount in the container. Calls the supervisor
//! lets the kernel run after checking them (documented where it does)
//! rely on that.

mod audit;
mod calls;
mod creds;
mod error;
mod filter;
mod handlers;
mod memory;
mod notify;
mod paths;
mod policy;
mod stats;
mod supervisor;
mod target;
mod view;

#[cfg(test)]
mod tests;

pub use calls::DENIED_BY_DEFAULT;
pub use error::{PolicyError, SupervisorError};
pub use filter::filter;
pub use policy::{NetAction, NetRule, NetworkPolicy, Policy};
pub use stats::{Counts, Stats};
pub use supervisor::Supervisor;
pub use view::SystemView;
