//! The single error type of the crate, written so that each message alone
//! tells the operator what to fix and where.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::resolve::ClassChoice;
use crate::runtime_options::DecodeError;
use crate::schema::BackendKind;
use crate::source::{ConfigSource, PathOrigin};

/// A place in a configuration: its source and 1-based line number.
///
/// Problems that concern the document as a whole (such as a missing
/// top-level key) point at line 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// Where the configuration came from.
    pub source: ConfigSource,
    /// The 1-based line of the offending key or value.
    pub line: usize,
}

impl Location {
    /// Builds the location of byte `offset` within `text`.
    pub(crate) fn at_offset(source: &ConfigSource, text: &str, offset: usize) -> Self {
        let end = offset.min(text.len());
        let line = text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Location {
            source: source.clone(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// Why a configuration could not be loaded or a class could not be chosen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not valid TOML (or not valid UTF-8).
    #[error("{at}: TOML syntax error: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Location,
        /// The parser's description, on one line.
        message: String,
    },

    /// A key that the schema does not define, usually a typo.
    #[error("{at}: unknown key `{key}`{}", expected_suffix(.expected))]
    UnknownKey {
        /// Where the key is.
        at: Location,
        /// The dotted key, e.g. `classes.native.bakend`.
        key: String,
        /// The keys allowed at that place, as listed by the schema.
        expected: Option<String>,
    },

    /// A required key is absent, e.g. a class without `backend`.
    #[error("{at}: missing required key `{key}`")]
    MissingKey {
        /// The table that lacks the key.
        at: Location,
        /// The dotted key that is required, e.g. `classes.fast.backend`.
        key: String,
    },

    /// A value of the wrong type or shape.
    #[error("{at}: invalid value for `{key}`: {message}")]
    InvalidValue {
        /// Where the value is.
        at: Location,
        /// The dotted key holding the value.
        key: String,
        /// What was wrong with it.
        message: String,
    },

    /// `backend` names no backend that Strata has.
    #[error(
        "{at}: `{key}` = {value:?} is not a known backend; allowed backends: {}",
        BackendKind::NAMES.join(", ")
    )]
    UnknownBackend {
        /// Where the value is.
        at: Location,
        /// The dotted key, e.g. `classes.fast.backend`.
        key: String,
        /// The rejected value.
        value: String,
    },

    /// A class name that could not be used in a shim binary name.
    #[error(
        "{at}: invalid class name {name:?} in `{key}`: class names must be non-empty \
         and contain only a-z, 0-9 and '-'"
    )]
    InvalidClassName {
        /// Where the class table is declared.
        at: Location,
        /// The dotted key of the class table.
        key: String,
        /// The rejected name.
        name: String,
    },

    /// `default_class` names a class that the configuration does not define.
    #[error(
        "{at}: `default_class` = {value:?} names a class that is not defined; defined classes: {}",
        list(.defined)
    )]
    UndefinedDefaultClass {
        /// Where `default_class` is set.
        at: Location,
        /// The class it names.
        value: String,
        /// The classes that do exist.
        defined: Vec<String>,
    },

    /// A configuration file could not be read.
    #[error("cannot read config file {} (named by {origin}): {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The setting that named the file.
        origin: PathOrigin,
        /// The operating system's error.
        source: io::Error,
    },

    /// The class chosen for a container is not defined.
    #[error(
        "runtime class {class:?} chosen by {chosen_by} is not defined in {config}; \
         defined classes: {}",
        list(.defined)
    )]
    UnknownClass {
        /// The requested class.
        class: String,
        /// Which rule chose it.
        chosen_by: ClassChoice,
        /// The configuration that was searched.
        config: ConfigSource,
        /// The classes that do exist.
        defined: Vec<String>,
    },

    /// The containerd runtime options could not be decoded.
    #[error("invalid containerd runtime options: {0}")]
    RuntimeOptions(#[from] DecodeError),
}

impl ConfigError {
    /// The location of the problem, when it lies inside a configuration text.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownKey { at, .. }
            | ConfigError::MissingKey { at, .. }
            | ConfigError::InvalidValue { at, .. }
            | ConfigError::UnknownBackend { at, .. }
            | ConfigError::InvalidClassName { at, .. }
            | ConfigError::UndefinedDefaultClass { at, .. } => Some(at),
            ConfigError::Read { .. }
            | ConfigError::UnknownClass { .. }
            | ConfigError::RuntimeOptions(_) => None,
        }
    }
}

fn expected_suffix(expected: &Option<String>) -> String {
    match expected {
        Some(keys) => format!("; expected {keys}"),
        None => String::new(),
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines() {
        let text = "a = 1\nb = 2\n\nc = 3";
        let src = ConfigSource::RuntimeOptionsBody;
        assert_eq!(Location::at_offset(&src, text, 0).line, 1);
        assert_eq!(Location::at_offset(&src, text, 5).line, 1);
        assert_eq!(Location::at_offset(&src, text, 6).line, 2);
        assert_eq!(Location::at_offset(&src, text, 13).line, 4);
        // Offsets past the end clamp instead of panicking.
        assert_eq!(Location::at_offset(&src, text, 1000).line, 4);
    }

    #[test]
    fn location_prints_source_and_line() {
        let at = Location {
            source: ConfigSource::File {
                path: "/etc/strata/config.toml".into(),
                origin: PathOrigin::DefaultPath,
            },
            line: 7,
        };
        assert_eq!(at.to_string(), "/etc/strata/config.toml:7");
    }
}
