//! Picks the backend for a container from the runtime-class configuration.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use oci_spec::runtime::Spec;
use strata_backend::Backend;
use strata_config::{BackendKind, Loader, RuntimeOptions, RUNTIME_CLASS_ANNOTATION};
use strata_native::NativeBackend;

use crate::error::{Result, TaskError};
use crate::interpose::InterposeBackend;

/// The environment variable that carries the class named by the shim
/// binary's name across the `start` re-exec (which runs `/proc/self/exe`
/// and so loses the symlink's name).
pub const BINARY_CLASS_ENV: &str = "STRATA_SHIM_CLASS";

/// The file in a bundle that records which backend created its container,
/// for the cleanup after a shim was killed.
const BACKEND_MARKER: &str = "strata-backend";

/// Where the task logic gets its backends from.
pub trait Backends: Send + Sync {
    /// Chooses the backend for a container from its spec and runtime options.
    fn select(
        &self,
        spec: &Spec,
        options: Option<&RuntimeOptions>,
    ) -> Result<(BackendKind, Arc<dyn Backend>)>;
    /// The backend instance for `kind`.
    fn backend(&self, kind: BackendKind) -> Result<Arc<dyn Backend>>;
}

/// Resolves classes to backends and owns the backend instances.
pub struct BackendSelector {
    binary_class: Option<String>,
    loader: Loader,
    helper: PathBuf,
    native: OnceLock<Arc<NativeBackend>>,
}

impl BackendSelector {
    /// A selector for this shim process. `helper` is the binary that runs the
    /// native backend's init helper.
    pub fn new(binary_class: Option<String>, helper: PathBuf) -> Self {
        BackendSelector {
            binary_class,
            loader: Loader::from_env(),
            helper,
            native: OnceLock::new(),
        }
    }

    /// The native backend, made at first use.
    fn native(&self) -> Result<Arc<NativeBackend>> {
        if let Some(native) = self.native.get() {
            return Ok(native.clone());
        }
        let native = Arc::new(NativeBackend::new(self.helper.clone()).map_err(TaskError::from)?);
        Ok(self.native.get_or_init(|| native).clone())
    }

    /// Records in the bundle which backend created its container.
    pub fn mark(bundle: &Path, kind: BackendKind) -> Result<()> {
        std::fs::write(bundle.join(BACKEND_MARKER), kind.as_str()).map_err(|e| {
            TaskError::Internal(format!(
                "writing {}: {e}",
                bundle.join(BACKEND_MARKER).display()
            ))
        })
    }

    /// The backend recorded in `bundle`, if a container was created there.
    pub fn marked(bundle: &Path) -> Option<BackendKind> {
        let text = std::fs::read_to_string(bundle.join(BACKEND_MARKER)).ok()?;
        BackendKind::from_name(text.trim())
    }

    /// Forgets the record.
    pub fn unmark(bundle: &Path) {
        let _ = std::fs::remove_file(bundle.join(BACKEND_MARKER));
    }
}

impl Backends for BackendSelector {
    /// Loads the configuration named by the runtime options (or the
    /// defaults), and resolves the class from the spec's annotation, the
    /// binary name, or the default class.
    fn select(
        &self,
        spec: &Spec,
        options: Option<&RuntimeOptions>,
    ) -> Result<(BackendKind, Arc<dyn Backend>)> {
        let config = self.loader.load(options)?;
        let annotation = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(RUNTIME_CLASS_ANNOTATION))
            .map(String::as_str);
        let resolved = config.resolve(annotation, self.binary_class.as_deref())?;
        let class = resolved.class;
        let kind = class.backend;
        log::info!(
            "class {:?} ({:?}) runs on the {} backend",
            class.name,
            resolved.chosen_by,
            kind.as_str()
        );
        if let Some(options) = &class.interpose {
            let policy = crate::interpose::policy(&class.name, options)
                .map_err(TaskError::InvalidArgument)?;
            let backend = InterposeBackend::new(self.native()?, policy, self.helper.clone());
            return Ok((kind, Arc::new(backend)));
        }
        if let Some(options) = &class.microvm {
            let backend = strata_microvm::MicrovmBackend::new(options.clone());
            return Ok((kind, Arc::new(backend)));
        }
        Ok((kind, self.backend(kind)?))
    }

    fn backend(&self, kind: BackendKind) -> Result<Arc<dyn Backend>> {
        match kind {
            BackendKind::Native => Ok(self.native()?),
            // Without a class, only cleanup needs it, which no policy changes.
            BackendKind::Interpose => Ok(Arc::new(InterposeBackend::new(
                self.native()?,
                Default::default(),
                self.helper.clone(),
            ))),
            // Without a class, only cleanup needs it, which no VM shape changes.
            BackendKind::Microvm => Ok(Arc::new(strata_microvm::MicrovmBackend::new(
                Default::default(),
            ))),
        }
    }
}

/// The class this binary's name selects, from the re-exec variable or the name itself.
pub fn binary_class() -> Option<String> {
    if let Ok(class) = std::env::var(BINARY_CLASS_ENV) {
        return (!class.is_empty()).then_some(class);
    }
    let argv0 = std::env::args_os().next()?;
    strata_config::class_from_binary_name(&argv0.to_string_lossy()).map(str::to_owned)
}
