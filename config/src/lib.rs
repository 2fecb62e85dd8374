//! Runtime-class configuration for the Strata containerd shim.
//!
//! Strata runs every container on the isolation backend that its runtime
//! class asks for. This crate owns everything between "containerd started the
//! shim" and "this container uses backend X":
//!
//! * [`Config`]: the validated TOML schema (`default_class` plus one
//!   `[classes.<name>]` table per class, each naming a [`BackendKind`] and
//!   optionally holding that backend's options: [`InterposeOptions`],
//!   [`MicrovmOptions`]);
//! * [`Loader`]: where the configuration comes from (containerd runtime
//!   options, `STRATA_CONFIG`, `/etc/strata/config.toml`, or the embedded
//!   default);
//! * [`RuntimeOptions`]: a small decoder for the protobuf runtime options
//!   containerd hands to non-runc shims;
//! * [`Config::resolve`]: picking the class for one container from its
//!   annotation, the shim binary name, or the default.
//!
//! Every rejection is a [`ConfigError`] whose message names the source, the
//! line and the offending key, so an operator can fix the file without
//! guessing.
//!
//! ```
//! use strata_config::{class_from_binary_name, BackendKind, Config, ConfigSource};
//!
//! let text = "default_class = \"native\"\n\
//!             [classes.native]\nbackend = \"native\"\n\
//!             [classes.fast]\nbackend = \"microvm\"\n";
//! let config = Config::from_toml(text, ConfigSource::RuntimeOptionsBody)?;
//! let binary_class = class_from_binary_name("/usr/bin/containerd-shim-strata-fast-v2");
//! let chosen = config.resolve(None, binary_class)?;
//! assert_eq!(chosen.class.backend, BackendKind::Microvm);
//! # Ok::<(), strata_config::ConfigError>(())
//! ```

mod error;
mod load;
mod options;
mod parse;
mod resolve;
mod runtime_options;
mod schema;
mod source;
mod wire;

pub use error::{ConfigError, Location};
pub use load::{Loader, CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH};
pub use options::{
    Hypervisor, InterposeOptions, MicrovmOptions, NetDefault, NetworkOptions, BUILTIN_KERNEL,
    MAX_VCPUS, MICROVM_DATA_DIR, MIN_MEMORY_MIB, QEMU_KERNEL,
};
pub use resolve::{class_from_binary_name, ClassChoice, ResolvedClass, RUNTIME_CLASS_ANNOTATION};
pub use runtime_options::{DecodeError, DecodeErrorKind, RuntimeOptions, RUNTIME_OPTIONS_TYPE};
pub use schema::{is_valid_class_name, BackendKind, Class, Config, EMBEDDED_CONFIG};
pub use source::{ConfigSource, PathOrigin};
