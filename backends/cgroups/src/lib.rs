//! Per-container cgroups for Strata backends, on cgroup v1 and v2.
//!
//! [`Hierarchy::detect`] finds where the host's controllers live;
//! [`Cgroup::new`] places a container's `linux.cgroupsPath` in that
//! hierarchy; the [`Cgroup`] then creates its directories, applies the OCI
//! `linux.resources`, takes processes in, kills them all and removes itself.
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

mod cgroup;
mod error;
mod hierarchy;
mod path;
mod resources;
mod sys;

#[cfg(test)]
mod tests;

pub use cgroup::{Cgroup, KILL_TIMEOUT};
pub use error::{Error, Result};
pub use hierarchy::{Hierarchy, Version, CGROUP_ROOT};
pub use path::OwnCgroups;
pub use resources::shares_to_weight;
