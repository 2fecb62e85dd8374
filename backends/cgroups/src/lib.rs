//! Per-container cgroups for Strata backends, on cgroup v1 and v2.
//!
//! [`Hierarchy::detect`] finds where the host's controllers live;
//! [`Cgroup::new`] places a container's `linux.cgroupsPath` in that
//! hierarchy; the [`Cgroup`] then creates its directories, applies the OCI
//! `linux.resources` (and applies them again to update them), takes
//! processes in, freezes and thaws them, reports their usage
//! ([`Cgroup::stats`]) and OOM kills ([`Cgroup::oom_watcher`]), kills them
//! all and removes itself.
//!
//! ```no_run
//! # fn main() -> strata_cgroups::Result<()> {
//! use strata_cgroups::{Cgroup, Hierarchy};
//! let h = Hierarchy::detect()?;
//! let cg = Cgroup::new(&h, "/strata/ctr-1")?;
//! cg.create()?;
//! cg.apply(&oci_spec::runtime::LinuxResources::default())?;
//! cg.add_process(1234)?;
//! cg.kill_all()?;
//! cg.destroy()?;
//! # Ok(())
//! # }
//! ```

mod bpf;
mod cgroup;
mod devices;
mod error;
mod hierarchy;
mod oom;
mod path;
mod resources;
mod stats;
mod sys;

#[cfg(test)]
mod tests;

pub use cgroup::{Cgroup, FREEZE_TIMEOUT, KILL_TIMEOUT};
pub use devices::with_default_devices;
pub use error::{Error, Result};
pub use hierarchy::{Hierarchy, Version, CGROUP_ROOT};
pub use oom::OomWatcher;
pub use path::OwnCgroups;
pub use resources::{blkio_weight_to_io_weight, shares_to_weight};
pub use stats::{CpuStats, HugetlbStats, IoDeviceStats, MemoryStats, PidsStats, Stats};
