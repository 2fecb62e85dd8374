//! The host-side pieces of a container, made before its init helper runs:
//! the checked spec, the cgroup with its limits, the start FIFO, and what the
//! runtime side contributes to the helper's work.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::runtime::Spec;
use strata_backend::{Error, Result};
use strata_cgroups::{Cgroup, Hierarchy, Version};

use crate::container::teardown;
use crate::interposer::Interposer;
use crate::protocol::{InitRequest, Request};
use crate::spawn::{IdMaps, Support};
use crate::validate;

/// The name of the FIFO, in the state directory, on which init waits for start.
pub(crate) const START_FIFO: &str = "strata-start.fifo";

/// A container ready for its init helper.
pub(crate) struct Prepared {
    /// The container's cgroup, created, with the spec's limits.
    pub cgroup: Arc<Cgroup>,
    /// The FIFO the init process waits on.
    pub start_fifo: PathBuf,
    /// The request for the init helper.
    pub request: Request,
    /// What exec'd processes get from the runtime side.
    pub support: Support,
    /// What the init process gets: that, plus id maps and hooks.
    pub init_support: Support,
}

/// Checks the spec and makes the container's host-side pieces; on failure
/// nothing is left behind.
pub(crate) fn prepare(
    hierarchy: &Hierarchy,
    id: &str,
    bundle: &Path,
    spec: &Spec,
    state_dir: &Path,
    preserve_fds: u32,
    interposer: Option<Arc<dyn Interposer>>,
) -> Result<Prepared> {
    validate::check(spec)?;
    let rootfs = strata_backend::rootfs_path(bundle, spec)?;
    if !rootfs.is_dir() {
        return Err(Error::InvalidSpec {
            field: "root.path".into(),
            reason: format!("{} is not a directory", rootfs.display()),
        });
    }
    let cgroup = Arc::new(cgroup_for(hierarchy, id, spec)?);
    let start_fifo = state_dir.join(START_FIFO);
    let made = (|| {
        cgroup
            .create()
            .map_err(|e| Error::Process(format!("creating the cgroup: {e}")))?;
        let resources = strata_cgroups::with_default_devices(
            spec.linux().as_ref().and_then(|l| l.resources().as_ref()),
        );
        cgroup.apply(&resources).map_err(|e| Error::InvalidSpec {
            field: "linux.resources".into(),
            reason: e.to_string(),
        })?;
        let _ = std::fs::remove_file(&start_fifo);
        nix::unistd::mkfifo(&start_fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::sys(format!("creating {}", start_fifo.display()), e))
    })();
    if let Err(e) = made {
        abandon(&cgroup, &start_fifo);
        return Err(e);
    }
    let support = Support::new(id, bundle, spec, preserve_fds, interposer);
    let request = Request::Init(Box::new(InitRequest {
        id: id.to_owned(),
        spec: spec.clone(),
        bundle: bundle.to_owned(),
        rootfs,
        start_fifo: start_fifo.clone(),
        cgroup_dirs: cgroup_mount_dirs(hierarchy, &cgroup),
        interposer: support.interposer_filter(),
    }));
    let init_support = Support {
        id_maps: id_maps(spec),
        hooks: spec.hooks().clone(),
        ..support.clone()
    };
    Ok(Prepared {
        cgroup,
        start_fifo,
        request,
        support,
        init_support,
    })
}

/// Removes what [`prepare`] made, after a later step failed.
pub(crate) fn abandon(cgroup: &Cgroup, start_fifo: &Path) {
    if let Err(e) = teardown(cgroup, start_fifo) {
        log::warn!("cleaning up after a failed create: {e}");
    }
}

/// The container's cgroup: `linux.cgroupsPath`, or `/strata/<id>`.
pub(crate) fn cgroup_for(hierarchy: &Hierarchy, id: &str, spec: &Spec) -> Result<Cgroup> {
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("/strata/{id}"));
    Cgroup::new(hierarchy, &path).map_err(|e| Error::InvalidSpec {
        field: "linux.cgroupsPath".into(),
        reason: e.to_string(),
    })
}

/// The cgroup directories a `cgroup` mount shows the container: on v2 the
/// one directory, on v1 one per hierarchy, named as the host names it.
fn cgroup_mount_dirs(hierarchy: &Hierarchy, cgroup: &Cgroup) -> Vec<(String, PathBuf)> {
    match hierarchy.version() {
        Version::V2 => cgroup
            .paths()
            .into_iter()
            .map(|p| (String::new(), p))
            .collect(),
        Version::V1 => {
            let mut dirs: Vec<(String, PathBuf)> = Vec::new();
            for controller in hierarchy.controllers().unwrap_or_default() {
                let (Some(mount), Some(dir)) = (
                    hierarchy.mount_point(&controller),
                    cgroup.path_for(&controller),
                ) else {
                    continue;
                };
                let Some(name) = mount.file_name().map(|n| n.to_string_lossy().into_owned()) else {
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
