//! The error every backend operation returns.

use std::path::PathBuf;

/// A failed backend operation; each variant says what failed and with which value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The class names a backend this build cannot run yet.
    #[error("backend {0:?} is not available yet")]
    NotAvailable(String),
    /// The OCI spec asks for something invalid or unsupported.
    #[error("invalid spec: {field}: {reason}")]
    InvalidSpec {
        /// The spec field, as a JSON path such as `linux.namespaces[2].type`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The process could not be set up or started; the message comes from the
    /// container side, e.g. `exec: "nope": executable file not found in $PATH`.
    #[error("{0}")]
    Process(String),
    /// The operation does not fit the container's or process's current state.
    #[error("{0}")]
    State(String),
    /// A process or container that does not exist (any more).
    #[error("{0} not found")]
    NotFound(String),
    /// A host operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path or value involved.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The backend's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps an I/O error on a path with what was being done to it.
    pub fn path(action: &str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context: format!("{action} {}", path.into().display()),
            source,
        }
    }

    /// Wraps an errno from a system call with what was being done.
    pub fn sys(context: impl Into<String>, errno: nix::errno::Errno) -> Self {
        Error::io(context, std::io::Error::from(errno))
    }
}
