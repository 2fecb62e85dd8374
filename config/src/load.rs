//! Finds the configuration for this shim instance, in order of precedence:
//! containerd runtime options, `STRATA_CONFIG`, the default path, and
//! finally the embedded default.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::runtime_options::RuntimeOptions;
use crate::schema::Config;
use crate::source::{ConfigSource, PathOrigin};

/// The environment variable that names a configuration file.
pub const CONFIG_ENV_VAR: &str = "STRATA_CONFIG";

/// Where the configuration lives when nothing else names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/strata/config.toml";

/// The inputs that decide which configuration is loaded. Its fields are
/// public so tests (and tools) can load without touching the process
/// environment or `/etc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loader {
    /// The value of `STRATA_CONFIG`, if set and non-empty.
    pub env_config: Option<PathBuf>,
    /// The implicit location, [`DEFAULT_CONFIG_PATH`] in production.
    pub default_path: PathBuf,
}

impl Loader {
    /// A loader reading `STRATA_CONFIG` from the process environment and
    /// using [`DEFAULT_CONFIG_PATH`].
    pub fn from_env() -> Self {
        Self::with_env_value(std::env::var_os(CONFIG_ENV_VAR))
    }

    fn with_env_value(value: Option<OsString>) -> Self {
        Loader {
            env_config: value.filter(|v| !v.is_empty()).map(PathBuf::from),
            default_path: PathBuf::from(DEFAULT_CONFIG_PATH),
        }
    }

    /// Loads the configuration. The first applicable source wins:
    ///
    /// 1. `runtime_options`: a non-empty `ConfigPath`, else a non-empty
    ///    `ConfigBody` (containerd documents the body as used only when no
    ///    path is given);
    /// 2. the file named by `STRATA_CONFIG`;
    /// 3. the file at `default_path`;
    /// 4. the embedded default, only when `default_path` does not exist.
    ///
    /// A file named explicitly by 1 or 2 must exist; any file that exists
    /// but cannot be read or parsed is an error, never a silent fallback.
    pub fn load(&self, runtime_options: Option<&RuntimeOptions>) -> Result<Config, ConfigError> {
        if let Some(options) = runtime_options {
            if !options.config_path.is_empty() {
                let path = Path::new(&options.config_path);
                return load_file(path, PathOrigin::RuntimeOptions);
            }
            if !options.config_body.is_empty() {
                return Config::from_toml_bytes(
                    &options.config_body,
                    ConfigSource::RuntimeOptionsBody,
                );
            }
        }
        if let Some(path) = &self.env_config {
            return load_file(path, PathOrigin::Environment);
        }
        match read(&self.default_path, PathOrigin::DefaultPath) {
            Err(ConfigError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(Config::embedded())
            }
            Err(err) => Err(err),
            Ok(bytes) => parse_file(&bytes, &self.default_path, PathOrigin::DefaultPath),
        }
    }
}

fn load_file(path: &Path, origin: PathOrigin) -> Result<Config, ConfigError> {
    let bytes = read(path, origin)?;
    parse_file(&bytes, path, origin)
}

fn read(path: &Path, origin: PathOrigin) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        origin,
        source,
    })
}

fn parse_file(bytes: &[u8], path: &Path, origin: PathOrigin) -> Result<Config, ConfigError> {
    let source = ConfigSource::File {
        path: path.to_owned(),
        origin,
    };
    Config::from_toml_bytes(bytes, source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::BackendKind;

    const ONLY_FAST: &str = "default_class = \"fast\"\n[classes.fast]\nbackend = \"microvm\"\n";
    const ONLY_SAFE: &str = "default_class = \"safe\"\n[classes.safe]\nbackend = \"interpose\"\n";
    const ONLY_PLAIN: &str = "default_class = \"plain\"\n[classes.plain]\nbackend = \"native\"\n";

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).expect("write config");
            path
        }

        fn missing(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// A loader whose default file holds `ONLY_PLAIN`.
        fn loader(&self, env_config: Option<PathBuf>) -> Loader {
            Loader {
                env_config,
                default_path: self.write("default.toml", ONLY_PLAIN),
            }
        }
    }

    fn options(path: &str, body: &str) -> RuntimeOptions {
        RuntimeOptions {
            type_url: String::new(),
            config_path: path.to_owned(),
            config_body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn runtime_options_path_beats_everything() {
        let fx = Fixture::new();
        let path = fx.write("opts.toml", ONLY_FAST);
        let loader = fx.loader(Some(fx.write("env.toml", ONLY_SAFE)));
        let opts = options(&path.to_string_lossy(), ONLY_SAFE);
        let config = loader.load(Some(&opts)).expect("loads");
        assert_eq!(config.default_class(), "fast");
        assert_eq!(
            config.source(),
            &ConfigSource::File {
                path,
                origin: PathOrigin::RuntimeOptions
            }
        );
    }

    #[test]
    fn runtime_options_body_beats_env_and_default() {
        let fx = Fixture::new();
        let loader = fx.loader(Some(fx.write("env.toml", ONLY_SAFE)));
        let config = loader.load(Some(&options("", ONLY_FAST))).expect("loads");
        assert_eq!(config.default_class(), "fast");
        assert_eq!(config.source(), &ConfigSource::RuntimeOptionsBody);
    }

    #[test]
    fn empty_runtime_options_fall_through_to_env() {
        let fx = Fixture::new();
        let env = fx.write("env.toml", ONLY_SAFE);
        let loader = fx.loader(Some(env.clone()));
        let config = loader.load(Some(&options("", ""))).expect("loads");
        assert_eq!(config.default_class(), "safe");
        assert_eq!(
            config.source(),
            &ConfigSource::File {
                path: env,
                origin: PathOrigin::Environment
            }
        );
    }

    #[test]
    fn env_beats_default_path() {
        let fx = Fixture::new();
        let loader = fx.loader(Some(fx.write("env.toml", ONLY_SAFE)));
        assert_eq!(loader.load(None).expect("loads").default_class(), "safe");
    }

    #[test]
    fn default_path_is_used_when_nothing_else_is_set() {
        let fx = Fixture::new();
        let loader = fx.loader(None);
        let config = loader.load(None).expect("loads");
        assert_eq!(config.default_class(), "plain");
        assert!(matches!(
            config.source(),
            ConfigSource::File {
                origin: PathOrigin::DefaultPath,
                ..
            }
        ));
    }

    #[test]
    fn missing_default_path_falls_back_to_embedded() {
        let fx = Fixture::new();
        let loader = Loader {
            env_config: None,
            default_path: fx.missing("absent.toml"),
        };
        let config = loader.load(None).expect("embedded");
        assert_eq!(config, Config::embedded());
        assert_eq!(config.source(), &ConfigSource::Embedded);
        let native = config.resolve(None, None).expect("default");
        assert_eq!(native.class.backend, BackendKind::Native);
    }

    #[test]
    fn missing_runtime_options_path_is_an_error() {
        let fx = Fixture::new();
        let absent = fx.missing("absent.toml");
        let loader = fx.loader(None);
        let err = loader
            .load(Some(&options(&absent.to_string_lossy(), ONLY_FAST)))
            .expect_err("missing file");
        let msg = err.to_string();
        assert!(msg.contains(&*absent.to_string_lossy()), "{msg}");
        assert!(msg.contains("runtime options ConfigPath"), "{msg}");
        assert!(msg.contains("No such file"), "{msg}");
    }

    #[test]
    fn missing_env_path_is_an_error() {
        let fx = Fixture::new();
        let absent = fx.missing("absent.toml");
        let err = fx
            .loader(Some(absent.clone()))
            .load(None)
            .expect_err("missing file");
        let msg = err.to_string();
        assert!(msg.contains(&*absent.to_string_lossy()), "{msg}");
        assert!(msg.contains("STRATA_CONFIG"), "{msg}");
        assert!(matches!(
            err,
            ConfigError::Read {
                origin: PathOrigin::Environment,
                ..
            }
        ));
    }

    #[test]
    fn unreadable_default_path_is_an_error_not_a_fallback() {
        let fx = Fixture::new();
        // A directory exists but cannot be read as a file.
        let loader = Loader {
            env_config: None,
            default_path: fx.dir.path().to_owned(),
        };
        let err = loader.load(None).expect_err("directory");
        let msg = err.to_string();
        assert!(msg.contains(&*fx.dir.path().to_string_lossy()), "{msg}");
        assert!(msg.contains("os error"), "{msg}");
    }

    #[test]
    fn invalid_default_file_is_an_error_naming_it() {
        let fx = Fixture::new();
        let loader = Loader {
            env_config: None,
            default_path: fx.write(
                "bad.toml",
                "default_class = \"x\"\n[classes.x]\nbakend = 1\n",
            ),
        };
        let err = loader.load(None).expect_err("invalid");
        let msg = err.to_string();
        let expected = format!("{}:3:", fx.dir.path().join("bad.toml").display());
        assert!(msg.starts_with(&expected), "{msg}");
        assert!(msg.contains("classes.x.bakend"), "{msg}");
    }

    #[test]
    fn invalid_body_names_runtime_options() {
        let fx = Fixture::new();
        let err = fx
            .loader(None)
            .load(Some(&options(
                "",
                "default_class = \"x\"\n\n[classes.x]\nbackend = \"vm\"\n",
            )))
            .expect_err("invalid");
        let msg = err.to_string();
        assert!(msg.starts_with("runtime options ConfigBody:4:"), "{msg}");
        assert!(msg.contains("classes.x.backend"), "{msg}");
    }

    #[test]
    fn env_value_handling() {
        let loader = Loader::with_env_value(None);
        assert_eq!(loader.env_config, None);
        assert_eq!(loader.default_path, Path::new(DEFAULT_CONFIG_PATH));
        assert_eq!(
            Loader::with_env_value(Some(OsString::new())).env_config,
            None
        );
        assert_eq!(
            Loader::with_env_value(Some("/x.toml".into())).env_config,
            Some(PathBuf::from("/x.toml"))
        );
    }
}
