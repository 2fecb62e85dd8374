//! The agent's error: what failed, naming the path or value, and why.

/// A failed agent operation; its text goes back to the host as the reply.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A system call failed.
    #[error("{context}: {source}")]
    Sys {
        /// What was being done.
        context: String,
        /// The errno.
        source: nix::errno::Errno,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A container's cgroup could not be made, set, read or removed.
    #[error(transparent)]
    Cgroup(#[from] strata_cgroups::Error),
    /// The request does not fit, e.g. an executable that does not exist.
    #[error("{0}")]
    Refused(String),
}

/// The agent's result type.
pub type Result<T> = std::result::Result<T, AgentError>;

/// Adds what was being done to a failed system call.
pub fn sys(context: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> AgentError {
    let context = context.into();
    move |source| AgentError::Sys { context, source }
}

/// Adds what was being done to a failed file operation.
pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let context = context.into();
    move |source| AgentError::Io { context, source }
}
