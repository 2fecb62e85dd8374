//! The error type of this crate.

use std::io;

/// Why a seccomp profile could not be compiled, loaded or handed over.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile breaks a rule of the OCI spec or of the kernel; `path`
    /// names the offending field as a JSON path such as
    /// `linux.seccomp.syscalls[3].args[0].index`.
    #[error("{path}: {reason}")]
    Invalid {
        /// JSON path of the offending field.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The profile asks for something this libseccomp or kernel cannot do.
    #[error("{path}: {reason}")]
    Unsupported {
        /// JSON path of the field that asks for it.
        path: String,
        /// What is missing.
        reason: String,
    },
    /// libseccomp refused an operation.
    #[error("{op}: {source}")]
    Library {
        /// What was being done.
        op: String,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// A system call failed while handing the listener to the agent.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl SeccompError {
    pub(crate) fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn library(
        op: impl Into<String>,
    ) -> impl FnOnce(libseccomp::error::SeccompError) -> Self {
        let op = op.into();
        move |source| Self::Library { op, source }
    }

    pub(crate) fn io(op: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let op = op.into();
        move |source| Self::Io { op, source }
    }
}
