//! `pause` and `resume`: freezing and thawing every process of a container.

use crate::commands::common::{Container, Context};
use crate::error::{Error, Result};
use crate::state::Status;

/// `strata pause ID`.
pub fn pause(ctx: &Context, id: &str) -> Result<i32> {
    let container = Container::open(ctx, id)?;
    match container.status(ctx) {
        Status::Running => {
            container.cgroup(ctx)?.freeze()?;
            Ok(0)
        }
        _ => Err(Error::NotRunning(id.to_owned())),
    }
}

/// `strata resume ID`.
pub fn resume(ctx: &Context, id: &str) -> Result<i32> {
    let container = Container::open(ctx, id)?;
    match container.status(ctx) {
        Status::Paused => {
            container.cgroup(ctx)?.thaw()?;
            Ok(0)
        }
        _ => Err(Error::NotPaused(id.to_owned())),
    }
}
