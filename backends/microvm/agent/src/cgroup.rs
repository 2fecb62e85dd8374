//! Each container's cgroup in the guest. The guest kernel enforces the
//! spec's resource limits on it (a fork bomb meets `pids.max` inside the VM,
//! as it does on the native class), it names every process of the container
//! for signals and removal, and its files are the container's statistics.
//! The cgroup code is the native backend's own (`strata-cgroups`).

use std::os::fd::OwnedFd;

use nix::fcntl::{open, OFlag};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use oci_spec::runtime::LinuxResources;
use strata_cgroups::{Cgroup, Hierarchy, Stats};

use crate::error::{sys, Result};

/// Where the agent mounts the guest's cgroup2 hierarchy.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup of one container, below `/strata` in the guest's hierarchy.
pub struct ContainerCgroup {
    cgroup: Cgroup,
}

impl ContainerCgroup {
    /// Creates the cgroup of `container` with the spec's `resources`
    /// applied, and the device rules every container gets as on the native
    /// class (the guest's other devices, such as the disks, stay out of
    /// reach); on failure nothing of it is left.
    pub fn create(container: &str, resources: Option<&LinuxResources>) -> Result<ContainerCgroup> {
        let hierarchy = Hierarchy::v2(CGROUP_ROOT.into());
        let cgroup = Cgroup::new(&hierarchy, &format!("/strata/{container}"))?;
        cgroup.create()?;
        if let Err(e) = cgroup.apply(&strata_cgroups::with_default_devices(resources)) {
            let _ = cgroup.destroy();
            return Err(e.into());
        }
        Ok(ContainerCgroup { cgroup })
    }

    /// Its `cgroup.procs`, open for writing: each new process of the
    /// container writes `0` to it before it runs the container's program,
    /// so nothing of the container ever runs outside the cgroup.
    pub fn open_procs(&self) -> Result<OwnedFd> {
        let file = self.cgroup.paths().remove(0).join("cgroup.procs");
        open(&file, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(sys(format!("opening {}", file.display())))
    }

    /// Sends `signal` to every process of the container.
    pub fn signal_all(&self, signal: Signal) -> Result<()> {
        Ok(self.cgroup.signal_all(signal)?)
    }

    /// Kills every process of the container and waits until they are gone.
    pub fn kill_all(&self) -> Result<()> {
        Ok(self.cgroup.kill_all()?)
    }

    /// The container's usage and limits.
    pub fn stats(&self) -> Result<Stats> {
        Ok(self.cgroup.stats()?)
    }

    /// Removes the (empty) cgroup.
    pub fn destroy(&self) -> Result<()> {
        Ok(self.cgroup.destroy()?)
    }
}
