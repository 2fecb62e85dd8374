//! Errors of the task service, each with the gRPC code containerd acts on.

use containerd_shim::protos::ttrpc::{self, Code};

/// A failed task request.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No such container or process.
    #[error("{0}: not found")]
    NotFound(String),
    /// The id is taken.
    #[error("{0}: already exists")]
    AlreadyExists(String),
    /// The request does not fit the process's state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request itself is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The RPC is not implemented by this shim.
    #[error("{0} is not implemented")]
    Unimplemented(&'static str),
    /// Anything else that failed.
    #[error("{0}")]
    Internal(String),
}

impl From<strata_backend::Error> for TaskError {
    fn from(e: strata_backend::Error) -> Self {
        use strata_backend::Error as B;
        match e {
            B::NotFound(what) => TaskError::NotFound(what),
            B::State(text) => TaskError::FailedPrecondition(text),
            B::InvalidSpec { .. } | B::NotAvailable(_) => TaskError::InvalidArgument(e.to_string()),
            B::Process(_) | B::Io { .. } => TaskError::Internal(e.to_string()),
        }
    }
}

impl From<strata_config::ConfigError> for TaskError {
    fn from(e: strata_config::ConfigError) -> Self {
        TaskError::InvalidArgument(e.to_string())
    }
}

impl From<TaskError> for ttrpc::Error {
    fn from(e: TaskError) -> Self {
        let code = match e {
            TaskError::NotFound(_) => Code::NOT_FOUND,
            TaskError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            TaskError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            TaskError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            TaskError::Unimplemented(_) => Code::UNIMPLEMENTED,
            TaskError::Internal(_) => Code::INTERNAL,
        };
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
    }
}

/// The task service's result type.
pub type Result<T> = std::result::Result<T, TaskError>;
