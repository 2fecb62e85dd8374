//! Chooses the runtime class of a new container and checks that this
//! build can run it: `--class` first, then the spec's
//! `io.strata.runtime-class` annotation, then the configuration's default.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use strata_config::{
    BackendKind, Config, ConfigError, ConfigSource, Loader, PathOrigin, RUNTIME_CLASS_ANNOTATION,
};

/// Why a class cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClassError {
    /// The configuration could not be loaded, or names no such class.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The `--config` file could not be read.
    #[error("cannot read config file {} (named by --config): {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `--class` names a class the configuration does not define.
    #[error("runtime class {name:?} (from --class) is not defined in {source_name}; defined classes: {defined}")]
    Undefined {
        /// The class asked for.
        name: String,
        /// Where the configuration came from.
        source_name: String,
        /// The classes it defines.
        defined: String,
    },
    /// The class's backend runs through the shim but not this command yet.
    #[error("backend {:?} is not available in the strata command yet; it runs through containerd (io.containerd.strata.v2)", .0.as_str())]
    NotAvailable(BackendKind),
}

/// Loads the configuration: `--config FILE` if given, else the usual
/// places (`STRATA_CONFIG`, `/etc/strata/config.toml`, the built-in one).
pub fn load(config_file: Option<&Path>) -> Result<Config, ClassError> {
    let Some(path) = config_file else {
        return Ok(Loader::from_env().load(None)?);
    };
    let bytes = std::fs::read(path).map_err(|source| ClassError::Read {
        path: path.to_owned(),
        source,
    })?;
    let source = ConfigSource::File {
        path: path.to_owned(),
        // Read errors are reported above; parse errors name only the path.
        origin: PathOrigin::Environment,
    };
    Ok(Config::from_toml_bytes(&bytes, source)?)
}

/// The class a container created from `spec` runs on; fails unless its
/// backend can run here.
pub fn choose(config: &Config, flag: Option<&str>, spec: &Spec) -> Result<String, ClassError> {
    let class = match flag.filter(|f| !f.is_empty()) {
        Some(name) => config.class(name).ok_or_else(|| ClassError::Undefined {
            name: name.to_owned(),
            source_name: config.source().to_string(),
            defined: config.class_names().join(", "),
        })?,
        None => {
            let annotation = spec
                .annotations()
                .as_ref()
                .and_then(|a| a.get(RUNTIME_CLASS_ANNOTATION))
                .map(String::as_str);
            config.resolve(annotation, None)?.class
        }
    };
    runnable(class.backend)?;
    Ok(class.name.clone())
}

/// Whether this build can run containers on `backend`.
pub fn runnable(backend: BackendKind) -> Result<(), ClassError> {
    match backend {
        BackendKind::Native => Ok(()),
        other => Err(ClassError::NotAvailable(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_config::ConfigSource;

    fn config() -> Config {
        let text = "default_class = \"native\"\n\
                    [classes.native]\nbackend = \"native\"\n\
                    [classes.vm]\nbackend = \"microvm\"\n\
                    [classes.watch]\nbackend = \"interpose\"\n";
        Config::from_toml(text, ConfigSource::Embedded).expect("valid")
    }

    fn spec_with(annotation: Option<&str>) -> Spec {
        let mut spec = Spec::default();
        if let Some(class) = annotation {
            spec.set_annotations(Some(
                [(RUNTIME_CLASS_ANNOTATION.to_owned(), class.to_owned())].into(),
            ));
        }
        spec
    }

    #[test]
    fn default_annotation_and_flag() {
        let config = config();
        assert_eq!(
            choose(&config, None, &spec_with(None)).expect("default"),
            "native"
        );
        let err = choose(&config, None, &spec_with(Some("vm"))).expect_err("microvm");
        assert_eq!(err.to_string(), "backend \"microvm\" is not available in the strata command yet; it runs through containerd (io.containerd.strata.v2)");
        // The flag wins over the annotation.
        assert_eq!(
            choose(&config, Some("native"), &spec_with(Some("vm"))).expect("flag"),
            "native"
        );
        let err = choose(&config, Some("watch"), &spec_with(None)).expect_err("interpose");
        assert_eq!(
            err.to_string(),
            "backend \"interpose\" is not available in the strata command yet; it runs through containerd (io.containerd.strata.v2)"
        );
    }

    #[test]
    fn config_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "default_class = \"x\"\n[classes.x]\nbackend = \"native\"\n",
        )
        .expect("write");
        let config = load(Some(&path)).expect("loads");
        assert_eq!(config.default_class(), "x");
        let missing = dir.path().join("missing.toml");
        let err = load(Some(&missing)).expect_err("missing");
        assert!(err.to_string().contains("named by --config"), "{err}");
        std::fs::write(&path, "default_class = 1\n").expect("write");
        let err = load(Some(&path)).expect_err("invalid");
        assert!(err.to_string().contains("c.toml"), "{err}");
    }

    #[test]
    fn undefined_classes_name_the_choices() {
        let err = choose(&config(), Some("turbo"), &spec_with(None)).expect_err("undefined");
        let text = err.to_string();
        assert!(text.contains("\"turbo\""), "{text}");
        assert!(text.contains("native, vm, watch"), "{text}");
        let err = choose(&config(), None, &spec_with(Some("turbo"))).expect_err("undefined");
        assert!(err.to_string().contains("\"turbo\""), "{err}");
    }
}
