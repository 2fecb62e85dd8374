//! The native backend: each container in its own Linux namespaces and
//! cgroup, on a pivoted root, as runc does it.
//!
//! The runtime side (this crate's [`NativeBackend`]) runs inside the shim's
//! async runtime; the container side runs in a re-executed helper process
//! ([`init_main`]), so no namespace or mount work ever happens between fork
//! and exec of a multi-threaded process.

mod channel;
mod container;
mod direct;
mod host;
mod init;
mod interposer;
mod prepare;
mod process;
mod protocol;
mod spawn;
mod stdio;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use oci_spec::runtime::Spec;
use strata_backend::{Backend, Container, CreateRequest, Error, Result};
use strata_cgroups::Hierarchy;

use crate::container::{teardown, NativeContainer};
use crate::prepare::{abandon, cgroup_for, prepare, Prepared, START_FIFO};
use crate::spawn::launch;

pub use direct::{DirectRuntime, Made};
pub use init::main as init_main;
pub use init::{become_process, InitError};
pub use interposer::{Interposer, Target};
pub use validate::{check as check_spec, check_process};

/// The argument with which a binary that embeds this backend must call
/// [`init_main`].
pub const INIT_ARG: &str = "init";

/// Creates native containers for the shim.
pub struct NativeBackend {
    hierarchy: Hierarchy,
    helper: PathBuf,
}

impl NativeBackend {
    /// A backend for this host. `helper` is the binary that runs
    /// [`init_main`] when given [`INIT_ARG`] (usually the running binary).
    pub fn new(helper: PathBuf) -> Result<NativeBackend> {
        Ok(NativeBackend {
            hierarchy: detect_cgroups()?,
            helper,
        })
    }
}

/// The host's cgroup hierarchy.
fn detect_cgroups() -> Result<Hierarchy> {
    Hierarchy::detect().map_err(|e| Error::Process(format!("detecting cgroups: {e}")))
}

impl NativeBackend {
    /// Creates a container whose processes `interposer`, if given,
    /// supervises; [`Backend::create`] is this without one.
    pub async fn create_with(
        &self,
        request: CreateRequest,
        interposer: Option<Arc<dyn Interposer>>,
    ) -> Result<Box<dyn Container>> {
        let prepared = prepare(
            &self.hierarchy,
            &request.id,
            &request.bundle,
            &request.spec,
            &request.state_dir,
            0,
            interposer,
        )?;
        let Prepared {
            cgroup,
            start_fifo,
            request: init_request,
            support,
            init_support,
        } = prepared;
        let launched = launch(
            &self.helper,
            init_request,
            &request.stdio,
            cgroup.clone(),
            init_support,
        )
        .await;
        match launched {
            Ok(init) => Ok(Box::new(NativeContainer {
                init,
                spec: request.spec,
                support,
                cgroup,
                start_fifo,
                helper: self.helper.clone(),
                oom: Default::default(),
            })),
            Err(e) => {
                abandon(&cgroup, &start_fifo);
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Backend for NativeBackend {
    async fn create(&self, request: CreateRequest) -> Result<Box<dyn Container>> {
        self.create_with(request, None).await
    }

    async fn cleanup(&self, id: &str, bundle: &Path, state_dir: &Path) -> Result<()> {
        let spec = Spec::load(bundle.join("config.json")).map_err(|e| Error::InvalidSpec {
            field: "config.json".into(),
            reason: e.to_string(),
        })?;
        let cgroup = cgroup_for(&self.hierarchy, id, &spec)?;
        let fifo = state_dir.join(START_FIFO);
        tokio::task::spawn_blocking(move || teardown(&cgroup, &fifo))
            .await
            .map_err(|e| Error::Process(format!("cleanup task failed: {e}")))?
    }
}
