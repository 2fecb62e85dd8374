//! Identifies where a configuration came from, so that every error and log
//! line can point the operator at the right file or setting.

use std::fmt;
use std::path::PathBuf;

/// Which setting named a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathOrigin {
    /// `ConfigPath` in the containerd runtime options of the runtime class.
    RuntimeOptions,
    /// The `STRATA_CONFIG` environment variable.
    Environment,
    /// The built-in default location, `/etc/strata/config.toml` in production.
    DefaultPath,
}

impl fmt::Display for PathOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathOrigin::RuntimeOptions => "runtime options ConfigPath",
            PathOrigin::Environment => "environment variable STRATA_CONFIG",
            PathOrigin::DefaultPath => "the default config location",
        })
    }
}

/// The origin of a loaded configuration; its `Display` form is what error
/// messages print as the source (a file path, `runtime options ConfigBody`,
/// or `embedded default config`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigSource {
    /// A TOML file on disk.
    File {
        /// The file that was read.
        path: PathBuf,
        /// The setting that named the file.
        origin: PathOrigin,
    },
    /// The TOML text carried inline in the runtime options' `ConfigBody`.
    RuntimeOptionsBody,
    /// The configuration compiled into the shim, used when nothing else exists.
    Embedded,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File { path, .. } => write!(f, "{}", path.display()),
            ConfigSource::RuntimeOptionsBody => f.write_str("runtime options ConfigBody"),
            ConfigSource::Embedded => f.write_str("embedded default config"),
        }
    }
}
