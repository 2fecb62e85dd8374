//! The configuration schema: the validated types the shim works with, and
//! the raw serde shapes they are read from.
//!
//! The raw shapes (`RawConfig`, `RawClass`) mirror the TOML exactly and
//! reject unknown keys; `parse.rs` turns them into [`Config`] after the
//! checks serde cannot express. A backend with options has one optional
//! table in `RawClass` (`[classes.x.interpose]`, `[classes.x.microvm]`), the
//! matching field in [`Class`], and a check in `parse.rs` that the table
//! fits the class's `backend`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::options::{InterposeOptions, MicrovmOptions, RawInterpose, RawMicrovm};
use crate::source::ConfigSource;

/// The configuration used when no file or runtime option provides one.
///
/// [`Config::embedded`] builds the same configuration without parsing.
pub const EMBEDDED_CONFIG: &str = r#"default_class = "native"

[classes.native]
backend = "native"

[classes.interpose]
backend = "interpose"

[classes.microvm]
backend = "microvm"
"#;

/// The isolation mechanism a class runs its containers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// Linux namespaces and cgroups, like runc.
    Native,
    /// `Native` plus a seccomp user-notification syscall interposer.
    Interpose,
    /// A KVM micro virtual machine per container.
    Microvm,
}

impl BackendKind {
    /// Every backend, in the order they are documented.
    pub const ALL: [BackendKind; 3] = [
        BackendKind::Native,
        BackendKind::Interpose,
        BackendKind::Microvm,
    ];

    /// The spelling of each backend in configuration files, same order as
    /// [`BackendKind::ALL`].
    pub const NAMES: [&'static str; 3] = ["native", "interpose", "microvm"];

    /// The spelling of this backend in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Native => "native",
            BackendKind::Interpose => "interpose",
            BackendKind::Microvm => "microvm",
        }
    }

    /// Looks a backend up by its configuration spelling (case-sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        BackendKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `name` may be used as a class name: non-empty and made of
/// `a-z`, `0-9` and `-` only, because it becomes part of the shim binary
/// name `containerd-shim-strata-<class>-v2`.
pub fn is_valid_class_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// One runtime class: a named choice of backend and that backend's options.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Class {
    /// The class name, the key of its `[classes.<name>]` table.
    pub name: String,
    /// The backend that runs this class's containers.
    pub backend: BackendKind,
    /// The interposer's policy; set exactly when `backend` is `interpose`.
    pub interpose: Option<InterposeOptions>,
    /// The virtual machine's shape; set exactly when `backend` is `microvm`.
    pub microvm: Option<MicrovmOptions>,
}

impl Class {
    /// Builds a class with its backend's default options; used for the
    /// embedded default and by tests of other crates.
    pub fn new(name: impl Into<String>, backend: BackendKind) -> Self {
        Class {
            name: name.into(),
            backend,
            interpose: (backend == BackendKind::Interpose).then(InterposeOptions::default),
            microvm: (backend == BackendKind::Microvm).then(MicrovmOptions::default),
        }
    }

    /// The same class with an interposer policy; for tests of other crates.
    pub fn with_interpose(mut self, options: InterposeOptions) -> Self {
        self.interpose = Some(options);
        self
    }
}

/// A validated configuration: every class is well-formed and
/// `default_class` names one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) source: ConfigSource,
    pub(crate) default_class: String,
    pub(crate) classes: BTreeMap<String, Class>,
}

impl Config {
    /// The built-in configuration (see [`EMBEDDED_CONFIG`]): classes
    /// `native`, `interpose` and `microvm` on their namesake backends, with
    /// `native` as the default.
    pub fn embedded() -> Self {
        let classes = BackendKind::ALL
            .into_iter()
            .map(|kind| (kind.as_str().to_owned(), Class::new(kind.as_str(), kind)))
            .collect();
        Config {
            source: ConfigSource::Embedded,
            default_class: BackendKind::Native.as_str().to_owned(),
            classes,
        }
    }

    /// Parses and validates TOML text; `source` is recorded for messages.
    pub fn from_toml(text: &str, source: ConfigSource) -> Result<Self, crate::ConfigError> {
        crate::parse::parse(text, source)
    }

    /// Like [`Config::from_toml`], for raw bytes that must be UTF-8
    /// (file contents, or the runtime options' `ConfigBody`).
    pub fn from_toml_bytes(bytes: &[u8], source: ConfigSource) -> Result<Self, crate::ConfigError> {
        crate::parse::parse_bytes(bytes, source)
    }

    /// Where this configuration came from.
    pub fn source(&self) -> &ConfigSource {
        &self.source
    }

    /// The class used when neither the annotation nor the binary name picks one.
    pub fn default_class(&self) -> &str {
        &self.default_class
    }

    /// Looks a class up by name.
    pub fn class(&self, name: &str) -> Option<&Class> {
        self.classes.get(name)
    }

    /// All classes, sorted by name.
    pub fn classes(&self) -> impl Iterator<Item = &Class> {
        self.classes.values()
    }

    /// The names of all classes, sorted; used in error messages.
    pub fn class_names(&self) -> Vec<String> {
        self.classes.keys().cloned().collect()
    }
}

/// The top-level TOML table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) default_class: Spanned<String>,
    #[serde(default)]
    pub(crate) classes: BTreeMap<RawClassName, RawClass>,
}

/// One `[classes.<name>]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClass {
    /// Kept as text so that an unknown backend is reported with its value,
    /// the allowed values and its line.
    pub(crate) backend: Spanned<String>,
    /// `[classes.<name>.interpose]`, only for the `interpose` backend. Not
    /// `Spanned`: a table made implicitly by a dotted header such as
    /// `[classes.x.interpose.network]` has no span to give.
    #[serde(default)]
    pub(crate) interpose: Option<RawInterpose>,
    /// `[classes.<name>.microvm]`, only for the `microvm` backend.
    #[serde(default)]
    pub(crate) microvm: Option<RawMicrovm>,
}

/// The message a class-name check raises inside serde; `parse.rs`
/// recognises it to report [`crate::ConfigError::InvalidClassName`] with the
/// key's own line.
pub(crate) const INVALID_CLASS_NAME: &str = "invalid class name";

/// A class name checked while the key is read, so that the error carries
/// the key's position.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RawClassName(pub(crate) String);

impl<'de> Deserialize<'de> for RawClassName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if is_valid_class_name(&name) {
            Ok(RawClassName(name))
        } else {
            Err(serde::de::Error::custom(INVALID_CLASS_NAME))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_text_parses_to_embedded_config() {
        let parsed = Config::from_toml(EMBEDDED_CONFIG, ConfigSource::Embedded);
        assert_eq!(parsed.ok(), Some(Config::embedded()));
    }

    #[test]
    fn embedded_config_has_the_three_classes() {
        let config = Config::embedded();
        assert_eq!(config.default_class(), "native");
        assert_eq!(config.class_names(), ["interpose", "microvm", "native"]);
        for kind in BackendKind::ALL {
            assert_eq!(config.class(kind.as_str()).map(|c| c.backend), Some(kind));
        }
    }

    #[test]
    fn backend_names_round_trip() {
        for (kind, name) in BackendKind::ALL.into_iter().zip(BackendKind::NAMES) {
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
            assert_eq!(BackendKind::from_name(name), Some(kind));
        }
        assert_eq!(BackendKind::from_name("Native"), None);
        assert_eq!(BackendKind::from_name(""), None);
    }

    #[test]
    fn class_name_rules() {
        for ok in ["native", "fast", "a", "gpu-2", "0", "-"] {
            assert!(is_valid_class_name(ok), "{ok:?} should be valid");
        }
        for bad in ["", "Fast", "a_b", "a.b", "a b", "é", "a/b"] {
            assert!(!is_valid_class_name(bad), "{bad:?} should be invalid");
        }
    }
}
