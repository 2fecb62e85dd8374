//! The native backend: each container in its own Linux namespaces and
//! cgroup, on a pivoted root, as runc does it.
//!
//! The runtime side (this crate's [`NativeBackend`]) runs inside the shim's
//! async runtime; the container side runs in a re-executed helper process
//! ([`init_main`]), so no namespace or mount work ever happens between fork
//! and exec of a multi-threaded process.

mod channel;
mod container;
mod init;
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
use strata_cgroups::{Cgroup, Hierarchy, Version};

use crate::container::{teardown, NativeContainer};
use crate::protocol::{InitRequest, Request};
use crate::spawn::{launch, IdMaps, Support};

pub use init::main as init_main;

/// The argument with which a binary that embeds this backend must call
/// [`init_main`].
pub const INIT_ARG: &str = "init";

/// The name of the FIFO, in the state directory, on which init waits for start.
const START_FIFO: &str = "strata-start.fifo";

/// Creates native containers.
pub struct NativeBackend {
    hierarchy: Hierarchy,
    helper: PathBuf,
}

impl NativeBackend {
    /// A backend for this host. `helper` is the binary that runs
    /// [`init_main`] when given [`INIT_ARG`] (usually the running binary).
    pub fn new(helper: PathBuf) -> Result<NativeBackend> {
        let hierarchy =
            Hierarchy::detect().map_err(|e| Error::Process(format!("detecting cgroups: {e}")))?;
        Ok(NativeBackend { hierarchy, helper })
    }

    fn cgroup_for(&self, id: &str, spec: &Spec) -> Result<Cgroup> {
        let path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("/strata/{id}"));
        Cgroup::new(&self.hierarchy, &path).map_err(|e| Error::InvalidSpec {
            field: "linux.cgroupsPath".into(),
            reason: e.to_string(),
        })
    }

    /// The cgroup directories a `cgroup` mount shows the container.
    fn cgroup_mount_dirs(&self, cgroup: &Cgroup) -> Vec<(String, PathBuf)> {
        match self.hierarchy.version() {
            Version::V2 => cgroup
                .paths()
                .into_iter()
                .map(|p| (String::new(), p))
                .collect(),
            Version::V1 => {
                let mut dirs: Vec<(String, PathBuf)> = Vec::new();
                for controller in self.hierarchy.controllers().unwrap_or_default() {
                    let (Some(mount), Some(dir)) = (
                        self.hierarchy.mount_point(&controller),
                        cgroup.path_for(&controller),
                    ) else {
                        continue;
                    };
                    let Some(name) = mount.file_name().map(|n| n.to_string_lossy().into_owned())
                    else {
                        continue;
                    };
                    if !dirs.iter().any(|(n, _)| *n == name) {
                        dirs.push((name, dir));
                    }
                }
                dirs
            }
        }
    }
}

/// The id maps for the container's new user namespace, if it gets one.
fn id_maps(spec: &Spec) -> Option<IdMaps> {
    let linux = spec.linux().as_ref()?;
    let lines = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let maps = IdMaps {
        uid: lines(linux.uid_mappings()),
        gid: lines(linux.gid_mappings()),
    };
    (!maps.uid.is_empty()).then_some(maps)
}

fn read_spec_rootfs(request: &CreateRequest) -> Result<PathBuf> {
    let root = request
        .spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec {
            field: "root".into(),
            reason: "missing".into(),
        })?;
    let path = root.path();
    Ok(if path.is_absolute() {
        path.clone()
    } else {
        request.bundle.join(path)
    })
}

#[async_trait]
impl Backend for NativeBackend {
    async fn create(&self, request: CreateRequest) -> Result<Box<dyn Container>> {
        validate::check(&request.spec)?;
        let rootfs = read_spec_rootfs(&request)?;
        if !rootfs.is_dir() {
            return Err(Error::InvalidSpec {
                field: "root.path".into(),
                reason: format!("{} is not a directory", rootfs.display()),
            });
        }
        let cgroup = Arc::new(self.cgroup_for(&request.id, &request.spec)?);
        let start_fifo = request.state_dir.join(START_FIFO);
        let cleanup = || {
            if let Err(e) = teardown(&cgroup, &start_fifo) {
                log::warn!("cleaning up after a failed create: {e}");
            }
        };
        let prepared = (|| {
            cgroup
                .create()
                .map_err(|e| Error::Process(format!("creating the cgroup: {e}")))?;
            if let Some(resources) = request
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref())
            {
                cgroup.apply(resources).map_err(|e| Error::InvalidSpec {
                    field: "linux.resources".into(),
                    reason: e.to_string(),
                })?;
            }
            let _ = std::fs::remove_file(&start_fifo);
            nix::unistd::mkfifo(&start_fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| Error::sys(format!("creating {}", start_fifo.display()), e))
        })();
        if let Err(e) = prepared {
            cleanup();
            return Err(e);
        }
        let init_request = Request::Init(Box::new(InitRequest {
            id: request.id.clone(),
            spec: request.spec.clone(),
            bundle: request.bundle.clone(),
            rootfs,
            start_fifo: start_fifo.clone(),
            cgroup_dirs: self.cgroup_mount_dirs(&cgroup),
        }));
        let support = Support {
            id: request.id.clone(),
            bundle: request.bundle.clone(),
            annotations: request.spec.annotations().clone(),
            id_maps: None,
            hooks: None,
            seccomp: request.spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
        };
        let init_support = Support {
            id_maps: id_maps(&request.spec),
            hooks: request.spec.hooks().clone(),
            ..support.clone()
        };
        let launched = launch(&self.helper, init_request, &request.stdio, cgroup.clone(), init_support).await;
        match launched {
            Ok(init) => Ok(Box::new(NativeContainer {
                init,
                spec: request.spec,
                support,
                cgroup,
                start_fifo,
                helper: self.helper.clone(),
            })),
            Err(e) => {
                cleanup();
                Err(e)
            }
        }
    }

    async fn cleanup(&self, id: &str, bundle: &Path, state_dir: &Path) -> Result<()> {
        let spec = Spec::load(bundle.join("config.json")).map_err(|e| Error::InvalidSpec {
            field: "config.json".into(),
            reason: e.to_string(),
        })?;
        let cgroup = self.cgroup_for(id, &spec)?;
        let fifo = state_dir.join(START_FIFO);
        tokio::task::spawn_blocking(move || teardown(&cgroup, &fifo))
            .await
            .map_err(|e| Error::Process(format!("cleanup task failed: {e}")))?
    }
}
