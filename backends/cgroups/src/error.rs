//! The error type of this crate.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while managing a container's cgroup.
///
/// Messages name the file or directory involved and, for writes, the value,
/// so that a failure reads like
/// `writing "5" to /sys/fs/cgroup/memory/x/memory.limit_in_bytes: Device or resource busy`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing a value to a cgroup file failed.
    #[error("writing {value:?} to {}: {}", .path.display(), describe(.source))]
    Write {
        /// The file written.
        path: PathBuf,
        /// The value written.
        value: String,
        /// What the kernel answered.
        source: io::Error,
    },
    /// Reading a cgroup file (or a file under /proc) failed.
    #[error("reading {}: {}", .path.display(), describe(.source))]
    Read {
        /// The file read.
        path: PathBuf,
        /// What the kernel answered.
        source: io::Error,
    },
    /// A file's content was not what the kernel documents.
    #[error("unexpected content in {}: {content:?}", .path.display())]
    Parse {
        /// The file read.
        path: PathBuf,
        /// The offending content.
        content: String,
    },
    /// Creating a cgroup directory failed.
    #[error("creating cgroup directory {}: {}", .path.display(), describe(.source))]
    Create {
        /// The directory.
        path: PathBuf,
        /// What the kernel answered.
        source: io::Error,
    },
    /// Removing a cgroup directory failed.
    #[error("removing cgroup directory {}: {}", .path.display(), describe(.source))]
    Remove {
        /// The directory.
        path: PathBuf,
        /// What the kernel answered.
        source: io::Error,
    },
    /// The `linux.cgroupsPath` of the spec cannot be used.
    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it was rejected.
        reason: String,
    },
    /// No usable cgroup filesystem was found on this host.
    #[error("no usable cgroup filesystem: {0}")]
    NoCgroupFs(String),
    /// The calling process's own cgroup is unknown for a hierarchy, so a
    /// relative cgroups path cannot be placed in it.
    #[error("own cgroup for controller {controller:?} is not listed in /proc/self/cgroup")]
    OwnCgroupUnknown {
        /// The controller (or `name=...` hierarchy) looked up.
        controller: String,
    },
    /// The spec asks for a limit whose controller is not mounted.
    #[error("cgroup {cgroup:?}: controller {controller:?} is not available")]
    MissingController {
        /// The cgroups path as given.
        cgroup: String,
        /// The controller.
        controller: String,
    },
    /// The spec's resources are contradictory or unsupported.
    #[error("cgroup {cgroup:?}: {reason}")]
    InvalidResource {
        /// The cgroups path as given.
        cgroup: String,
        /// What is wrong.
        reason: String,
    },
    /// [`Cgroup::signal_all`](crate::Cgroup::signal_all) could not signal
    /// one of the processes.
    #[error("cgroup {cgroup:?}: sending {signal} to process {pid}: {}", .source.desc())]
    Signal {
        /// The cgroups path as given.
        cgroup: String,
        /// The signal.
        signal: nix::sys::signal::Signal,
        /// The process.
        pid: i32,
        /// What the kernel answered.
        source: nix::errno::Errno,
    },
    /// Processes survived [`Cgroup::kill_all`](crate::Cgroup::kill_all).
    #[error("cgroup {cgroup:?} still has processes {pids:?} after {timeout:?}")]
    KillTimeout {
        /// The cgroups path as given.
        cgroup: String,
        /// The processes left.
        pids: Vec<i32>,
        /// How long the kill was retried.
        timeout: Duration,
    },
    /// [`Cgroup::freeze`](crate::Cgroup::freeze) did not complete in time;
    /// the cgroup was thawed again.
    #[error("cgroup {cgroup:?}: freezing did not complete in {timeout:?}; thawed it again")]
    FreezeTimeout {
        /// The cgroups path as given.
        cgroup: String,
        /// How long the freeze was waited for.
        timeout: Duration,
    },
    /// Loading or attaching the eBPF program that enforces device rules on
    /// cgroup v2 failed.
    #[error(
        "{}: device rules on cgroup v2 need an eBPF program, which {action}: {}{}",
        .path.display(),
        describe(.source),
        verifier_log(.log)
    )]
    DeviceProgram {
        /// The cgroup directory.
        path: PathBuf,
        /// What went wrong, completing "an eBPF program, which ...".
        action: &'static str,
        /// What the kernel answered.
        source: io::Error,
        /// The verifier's explanation, when it rejected the program.
        log: String,
    },
    /// Setting up or reading an OOM notification failed.
    #[error("OOM notification for {}: {action}: {}", .path.display(), describe(.source))]
    Notify {
        /// The file watched.
        path: PathBuf,
        /// The step that failed.
        action: &'static str,
        /// What the kernel answered.
        source: io::Error,
    },
}

fn verifier_log(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!(" (verifier: {log})")
    }
}

/// The kernel's words for an error, without Rust's `(os error N)` suffix.
fn describe(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => err.to_string(),
    }
}
