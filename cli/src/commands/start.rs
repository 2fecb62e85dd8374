//! `start`: lets a created container's init run the user's program.

use crate::commands::common::{Container, Context};
use crate::error::{Error, Result};
use crate::state::Status;

/// `strata start ID`.
pub fn run(ctx: &Context, id: &str) -> Result<i32> {
    let container = Container::open(ctx, id)?;
    match container.status(ctx) {
        Status::Created => {
            ctx.runtime()?.start(
                container.id(),
                &container.record.bundle,
                &container.spec,
                container.locked.dir(),
                container.record.pid,
            )?;
            Ok(0)
        }
        Status::Stopped => Err(Error::State(
            "cannot start a container that has stopped".into(),
        )),
        Status::Running => Err(Error::State(
            "cannot start an already running container".into(),
        )),
        other => Err(Error::State(format!(
            "cannot start a container in the {other} state"
        ))),
    }
}
