//! The host-side pieces of a container, made before its init helper runs:
//! the checked spec, the cgroup with its limits, the start FIFO, and what the
//! runtime side contributes to the helper's work.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, Spec};
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
    let rootfs = rootfs_path(bundle, spec)?;
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
        let resources = with_default_devices(spec);
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

/// Device nodes every container may use whatever its device rules say, as
/// runc allows them: (type, major, minor), `None` for any minor.
const DEFAULT_DEVICE_RULES: [(LinuxDeviceType, i64, Option<i64>); 9] = [
    (LinuxDeviceType::C, 1, Some(3)),    // null
    (LinuxDeviceType::C, 1, Some(5)),    // zero
    (LinuxDeviceType::C, 1, Some(7)),    // full
    (LinuxDeviceType::C, 1, Some(8)),    // random
    (LinuxDeviceType::C, 1, Some(9)),    // urandom
    (LinuxDeviceType::C, 5, Some(0)),    // tty
    (LinuxDeviceType::C, 5, Some(2)),    // ptmx
    (LinuxDeviceType::C, 136, None),     // the pts slaves
    (LinuxDeviceType::C, 10, Some(200)), // tun
];

/// The spec's resources with the device rules the container needs to
/// exist: its own device list, then the default devices allowed, and mknod
/// of any node (a node of `linux.devices` still needs the spec's own rule
/// to be opened). Later rules win, so these defaults hold whatever the
/// spec's list says, as with runc.
fn with_default_devices(spec: &Spec) -> LinuxResources {
    let linux = spec.linux().as_ref();
    let mut resources = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut rules = resources.devices().clone().unwrap_or_default();
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true)
            .set_typ(Some(typ))
            .set_major(major)
            .set_minor(minor)
            .set_access(Some(access.to_owned()));
        r
    };
    rules.push(rule(LinuxDeviceType::C, None, None, "m"));
    rules.push(rule(LinuxDeviceType::B, None, None, "m"));
    for (typ, major, minor) in DEFAULT_DEVICE_RULES {
        rules.push(rule(typ, Some(major), minor, "rwm"));
    }
    resources.set_devices(Some(rules));
    resources
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

/// The absolute host path of the spec's root filesystem.
fn rootfs_path(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let root = spec.root().as_ref().ok_or_else(|| Error::InvalidSpec {
        field: "root".into(),
        reason: "missing".into(),
    })?;
    let path = root.path();
    Ok(if path.is_absolute() {
        path.clone()
    } else {
        bundle.join(path)
    })
}
