//! Chooses the runtime class of one container: its annotation first, then
//! the class encoded in the shim binary's name, then `default_class`.

use std::fmt;

use crate::error::ConfigError;
use crate::schema::{Class, Config};

/// The OCI annotation with which a container asks for a runtime class.
pub const RUNTIME_CLASS_ANNOTATION: &str = "io.strata.runtime-class";

/// Every Strata shim binary is named `containerd-shim-strata[-<class>]-v2`.
const BINARY_PREFIX: &str = "containerd-shim-strata";
const BINARY_SUFFIX: &str = "-v2";

/// Extracts the class from a shim binary name, so that installing the shim
/// as `containerd-shim-strata-fast-v2` (runtime type
/// `io.containerd.strata-fast.v2`) selects class `fast`.
///
/// Accepts a bare file name or a full path. Returns `None` for the generic
/// `containerd-shim-strata-v2` and for names that do not follow the pattern.
pub fn class_from_binary_name(name: &str) -> Option<&str> {
    let file_name = name.rsplit('/').next()?;
    let middle = file_name
        .strip_prefix(BINARY_PREFIX)?
        .strip_suffix(BINARY_SUFFIX)?;
    let class = middle.strip_prefix('-')?;
    (!class.is_empty()).then_some(class)
}

/// Which rule chose a container's class; reported in logs and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClassChoice {
    /// The [`RUNTIME_CLASS_ANNOTATION`] annotation.
    Annotation,
    /// The class part of the shim binary name.
    BinaryName,
    /// The configuration's `default_class`.
    DefaultClass,
}

impl fmt::Display for ClassChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassChoice::Annotation => write!(f, "annotation {RUNTIME_CLASS_ANNOTATION}"),
            ClassChoice::BinaryName => f.write_str("the shim binary name"),
            ClassChoice::DefaultClass => f.write_str("default_class"),
        }
    }
}

/// The outcome of [`Config::resolve`]: the class and why it was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedClass<'a> {
    /// The chosen class.
    pub class: &'a Class,
    /// The rule that chose it.
    pub chosen_by: ClassChoice,
}

impl Config {
    /// Picks the class for one container. The first present value wins:
    /// `annotation` (the value of [`RUNTIME_CLASS_ANNOTATION`]), then
    /// `binary_class` (from [`class_from_binary_name`]), then
    /// `default_class`. Empty strings count as absent. A chosen class that
    /// is not defined is an error; there is no fallback past it, so a typo
    /// never silently runs a container on a weaker backend.
    pub fn resolve(
        &self,
        annotation: Option<&str>,
        binary_class: Option<&str>,
    ) -> Result<ResolvedClass<'_>, ConfigError> {
        let (name, chosen_by) = if let Some(name) = annotation.filter(|v| !v.is_empty()) {
            (name, ClassChoice::Annotation)
        } else if let Some(name) = binary_class.filter(|v| !v.is_empty()) {
            (name, ClassChoice::BinaryName)
        } else {
            (self.default_class(), ClassChoice::DefaultClass)
        };
        match self.class(name) {
            Some(class) => Ok(ResolvedClass { class, chosen_by }),
            None => Err(ConfigError::UnknownClass {
                class: name.to_owned(),
                chosen_by,
                config: self.source().clone(),
                defined: self.class_names(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::BackendKind;
    use crate::source::{ConfigSource, PathOrigin};

    fn config() -> Config {
        let text = "default_class = \"native\"\n\
                    [classes.native]\nbackend = \"native\"\n\
                    [classes.fast]\nbackend = \"microvm\"\n\
                    [classes.watched]\nbackend = \"interpose\"\n";
        let source = ConfigSource::File {
            path: "/etc/strata/config.toml".into(),
            origin: PathOrigin::DefaultPath,
        };
        Config::from_toml(text, source).expect("valid config")
    }

    #[test]
    fn binary_names() {
        assert_eq!(class_from_binary_name("containerd-shim-strata-v2"), None);
        assert_eq!(
            class_from_binary_name("containerd-shim-strata-fast-v2"),
            Some("fast")
        );
        assert_eq!(
            class_from_binary_name("/usr/local/bin/containerd-shim-strata-gpu-2-v2"),
            Some("gpu-2")
        );
        assert_eq!(
            class_from_binary_name("/usr/bin/containerd-shim-strata-v2"),
            None
        );
        assert_eq!(class_from_binary_name("containerd-shim-strata--v2"), None);
        assert_eq!(class_from_binary_name("containerd-shim-runc-v2"), None);
        assert_eq!(
            class_from_binary_name("containerd-shim-stratafast-v2"),
            None
        );
        assert_eq!(class_from_binary_name("containerd-shim-strata-fast"), None);
        assert_eq!(class_from_binary_name("/usr/bin/"), None);
        assert_eq!(class_from_binary_name(""), None);
    }

    #[test]
    fn annotation_wins() {
        let config = config();
        let chosen = config
            .resolve(Some("fast"), Some("watched"))
            .expect("defined");
        assert_eq!(chosen.class.name, "fast");
        assert_eq!(chosen.class.backend, BackendKind::Microvm);
        assert_eq!(chosen.chosen_by, ClassChoice::Annotation);
    }

    #[test]
    fn binary_name_is_second() {
        let config = config();
        let chosen = config.resolve(None, Some("watched")).expect("defined");
        assert_eq!(chosen.class.backend, BackendKind::Interpose);
        assert_eq!(chosen.chosen_by, ClassChoice::BinaryName);
        let chosen = config.resolve(Some(""), Some("watched")).expect("defined");
        assert_eq!(chosen.chosen_by, ClassChoice::BinaryName);
    }

    #[test]
    fn default_class_is_last() {
        let config = config();
        let chosen = config.resolve(None, None).expect("defined");
        assert_eq!(chosen.class.name, "native");
        assert_eq!(chosen.chosen_by, ClassChoice::DefaultClass);
        let chosen = config.resolve(Some(""), Some("")).expect("defined");
        assert_eq!(chosen.chosen_by, ClassChoice::DefaultClass);
    }

    #[test]
    fn undefined_class_from_annotation() {
        let err = config()
            .resolve(Some("turbo"), Some("fast"))
            .expect_err("undefined");
        let msg = err.to_string();
        for fragment in [
            "\"turbo\"",
            "annotation io.strata.runtime-class",
            "/etc/strata/config.toml",
            "fast, native, watched",
        ] {
            assert!(
                msg.contains(fragment),
                "{msg:?} should contain {fragment:?}"
            );
        }
    }

    #[test]
    fn undefined_class_from_binary_name() {
        let err = config()
            .resolve(None, Some("turbo"))
            .expect_err("undefined");
        let msg = err.to_string();
        assert!(msg.contains("\"turbo\""), "{msg}");
        assert!(msg.contains("the shim binary name"), "{msg}");
        assert!(msg.contains("/etc/strata/config.toml"), "{msg}");
        // The default is not consulted once a choice has been made.
        assert!(matches!(
            err,
            ConfigError::UnknownClass {
                chosen_by: ClassChoice::BinaryName,
                ..
            }
        ));
    }

    #[test]
    fn undefined_default_class_reports_its_rule() {
        let mut config = config();
        config.default_class = "gone".to_owned();
        let err = config.resolve(None, None).expect_err("undefined");
        assert!(err.to_string().contains("chosen by default_class"), "{err}");
    }
}
