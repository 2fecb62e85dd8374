//! The probe's one error type: what was being done, and the OS error that
//! stopped it.

use std::fmt;
use std::io;

/// A failed step of a measurement, naming the step and its values.
#[derive(Debug)]
pub struct Error {
    /// What failed, with the values involved (`opening /tmp/x`).
    pub what: String,
    /// Why.
    pub source: io::Error,
}

impl Error {
    /// `what` failed with the calling thread's last OS error.
    pub fn last_os(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            source: io::Error::last_os_error(),
        }
    }

    /// `what` failed with `source`.
    pub fn new(what: impl Into<String>, source: io::Error) -> Self {
        Self {
            what: what.into(),
            source,
        }
    }

    /// `what` is wrong in itself (a bad argument, an unexpected result).
    pub fn invalid(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The probe's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Turns a `-1` return of a libc call into an [`Error`] naming `what`.
pub fn check(ret: libc::c_long, what: impl FnOnce() -> String) -> Result<libc::c_long> {
    if ret < 0 {
        Err(Error::last_os(what()))
    } else {
        Ok(ret)
    }
}
