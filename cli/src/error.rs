//! What a command can fail with, worded as OCI runtime callers expect:
//! podman, for one, looks for "does not exist" in a failed `state`.

use std::path::{Path, PathBuf};

/// A failed command; its text is what the user (and the `--log` file) sees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No container has this id.
    #[error("container \"{0}\" does not exist")]
    NotExist(String),
    /// `create` or `run` with an id that is taken.
    #[error("container with id exists: {0}")]
    Exists(String),
    /// An id that cannot name a directory safely.
    #[error("invalid id format: {0}")]
    InvalidId(String),
    /// The container is not in a state that allows the command; the text
    /// says which (e.g. `cannot start a container that has stopped`).
    #[error("{0}")]
    State(String),
    /// The container has no running process.
    #[error("container \"{0}\" is not running")]
    NotRunning(String),
    /// `resume` of a container that is not paused.
    #[error("container \"{0}\" is not paused")]
    NotPaused(String),
    /// Wrong or conflicting flags and arguments.
    #[error("{0}")]
    Usage(String),
    /// The bundle has no readable, valid `config.json`.
    #[error("{0}")]
    Spec(String),
    /// The runtime class cannot be used.
    #[error(transparent)]
    Class(#[from] crate::class::ClassError),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] strata_backend::Error),
    /// The container's cgroup could not be read or changed.
    #[error(transparent)]
    Cgroup(#[from] strata_cgroups::Error),
    /// Sending a terminal to the console socket failed.
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The result of most operations in this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path` while doing `action`.
    pub fn path(action: &str, path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            context: format!("{action} {}", path.display()),
            source,
        }
    }

    /// An I/O error with free-form context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The absolute form of `path`, relative to the current directory.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::path("resolving", path, e))
}
