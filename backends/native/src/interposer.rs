//! The seam through which a syscall interposer joins a native container.
//!
//! An interposer gives every process of the container one more seccomp
//! filter, loaded last before exec (after the spec's own filter and after
//! `no_new_privs`), and takes that filter's notification listener before the
//! process runs its program. The native backend does the loading and the
//! hand-over; what decides the notified calls is the interposer's business.

use std::fmt::Debug;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use oci_spec::runtime::{LinuxSeccomp, Spec};
use strata_backend::{Error, Result};
use strata_cgroups::Cgroup;

/// A user-space syscall interposer for the processes of one container.
pub trait Interposer: Send + Sync + Debug {
    /// The filter each process loads last; its notifying rules go to the
    /// interposer, its other rules are enforced by the kernel alone.
    fn filter(&self) -> &LinuxSeccomp;

    /// Starts deciding the notified calls of `target` through `listener`.
    /// Called while the process waits, before it runs its program; an error
    /// fails the create or exec.
    fn supervise(&self, target: Target<'_>, listener: OwnedFd) -> Result<()>;
}

/// The process an interposer is asked to supervise.
#[derive(Debug)]
pub struct Target<'a> {
    /// The container id.
    pub id: &'a str,
    /// The host pid of the process.
    pub pid: i32,
    /// The container's spec (its resources shape what the process is shown).
    pub spec: &'a Spec,
    /// The container's cgroup, to stop it if its interposer fails.
    pub cgroup: &'a Cgroup,
}

/// Takes descriptor `fd` of process `pid` into this process
/// (`pidfd_getfd(2)`), the way the runtime receives an interposer's
/// listener: the process reports the number with a plain write, because a
/// `sendmsg` after its interposer filter is loaded would wait on the very
/// interposer that is not running yet.
pub(crate) fn take_fd(pid: i32, fd: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(Error::io(
            format!("opening a pidfd for process {pid}"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: pidfd_getfd takes a pidfd, a descriptor number and flags and
    // returns a new close-on-exec descriptor or -1.
    let taken = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if taken < 0 {
        return Err(Error::io(
            format!("taking descriptor {fd} of process {pid}"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: pidfd_getfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(taken as i32) })
}
