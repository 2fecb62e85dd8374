//! What can go wrong when running hooks.
//!
//! The messages end up in the error the shim returns to containerd, so they
//! name the hook (kind, position, path) and carry the tail of what it printed.

use std::io;
use std::path::PathBuf;

use crate::HookKind;

/// A hook of some kind could not be run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The container state could not be encoded as JSON, so no hook ran.
    #[error("{kind} hooks: encoding the container state: {error}")]
    State {
        /// The kind of hooks that was about to run.
        kind: HookKind,
        /// Why encoding failed (for example a bundle path that is not UTF-8).
        error: serde_json::Error,
    },
    /// One hook failed; hooks after it in the same list did not run.
    #[error("{kind} hook {index} ({}): {cause}", path.display())]
    Hook {
        /// The kind of the failing hook.
        kind: HookKind,
        /// Its position (from 0) in the list of that kind in `config.json`.
        index: usize,
        /// Its `path`.
        path: PathBuf,
        /// What went wrong.
        cause: HookFailure,
    },
}

/// Why a single hook failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookFailure {
    /// The spec requires an absolute `path`; a relative one would be looked up
    /// in a `PATH` the hook author does not control.
    #[error("the path is not absolute")]
    RelativePath,
    /// `timeout` was zero or negative; the spec requires it to be positive.
    #[error("the timeout must be a positive number of seconds, not {0}")]
    BadTimeout(i64),
    /// The path, an argument or an environment entry contains a NUL byte,
    /// which cannot be passed to a program.
    #[error("{0} contains a NUL byte")]
    Nul(&'static str),
    /// The hook could not be started: the path is missing, not executable, ...
    #[error("cannot be started: {0}")]
    Spawn(io::Error),
    /// Talking to or waiting for the started hook failed.
    #[error("{what}: {error}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The system's answer.
        error: io::Error,
    },
    /// The hook exited with a non-zero status.
    #[error("exited with status {code}{}", suffix(.output))]
    Exited {
        /// Its exit status.
        code: i32,
        /// The end of its stderr (or of its stdout if stderr was empty).
        output: String,
    },
    /// The hook was killed by a signal it did not expect from us.
    #[error("killed by signal {}{}", signal_name(*.signal), suffix(.output))]
    Signaled {
        /// The signal number.
        signal: i32,
        /// The end of its stderr (or of its stdout if stderr was empty).
        output: String,
    },
    /// The hook outlived its `timeout` and was killed with its process group.
    #[error("timed out after {seconds}s and was killed{}", suffix(.output))]
    TimedOut {
        /// The hook's `timeout`.
        seconds: u64,
        /// The end of its stderr (or of its stdout if stderr was empty).
        output: String,
    },
}

/// Appends captured output to a message, if there is any.
fn suffix(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!(": {output}")
    }
}

/// "9 (SIGKILL)" for a signal number, or just the number if it is unknown.
fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => format!("{signal} ({})", s.as_str()),
        Err(_) => signal.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_hook_and_its_output() {
        let err = HookError::Hook {
            kind: HookKind::CreateRuntime,
            index: 1,
            path: "/usr/bin/x".into(),
            cause: HookFailure::Exited {
                code: 3,
                output: "no network".into(),
            },
        };
        assert_eq!(
            err.to_string(),
            "createRuntime hook 1 (/usr/bin/x): exited with status 3: no network"
        );
        let silent = HookFailure::Signaled {
            signal: 9,
            output: String::new(),
        };
        assert_eq!(silent.to_string(), "killed by signal 9 (SIGKILL)");
        let slow = HookFailure::TimedOut {
            seconds: 2,
            output: String::new(),
        };
        assert_eq!(slow.to_string(), "timed out after 2s and was killed");
    }
}
