//! The crate's errors: a policy that cannot become a filter, and a
//! supervisor that cannot start or had to stop.

use std::path::PathBuf;

/// A policy that cannot become a filter.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A network rule's text does not parse.
    #[error("network rule {text:?}: {reason}")]
    BadNetRule {
        /// The rule as written.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A path in `hidden` or `read_only` is relative.
    #[error("{field}: {path:?} is not an absolute path")]
    RelativePath {
        /// `hidden` or `read_only`.
        field: &'static str,
        /// The path as written.
        path: PathBuf,
    },
    /// `allow_syscalls` names a syscall that is not denied by default.
    #[error("allow_syscalls: {0:?} is not one of the syscalls denied by default")]
    NotDenied(String),
}

/// Why the supervisor could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// A system call the supervisor itself needs failed.
    #[error("{what}: {source}")]
    Io {
        /// What the supervisor was doing.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The policy given to the supervisor is not valid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A worker thread panicked.
    #[error("supervisor worker thread panicked")]
    WorkerPanicked,
}

impl SupervisorError {
    /// Wraps the last OS error with what was being done.
    pub(crate) fn last_os(what: impl Into<String>) -> SupervisorError {
        SupervisorError::Io {
            what: what.into(),
            source: std::io::Error::last_os_error(),
        }
    }
}
