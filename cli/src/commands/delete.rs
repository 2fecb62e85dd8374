//! `delete`: removes a stopped container; a created one is killed first,
//! and with `--force` so is a running or paused one.

use crate::args::DeleteArgs;
use crate::commands::common::{Container, Context};
use crate::error::{Error, Result};
use crate::state::Status;

/// `strata delete [--force] ID`.
pub fn run(ctx: &Context, args: &DeleteArgs) -> Result<i32> {
    let container = match Container::open(ctx, &args.id) {
        Ok(container) => container,
        Err(Error::NotExist(id)) => {
            if let Err(e) = remove_stale(ctx, &id) {
                log::warn!("{e}");
            }
            return if args.force {
                Ok(0)
            } else {
                Err(Error::NotExist(id))
            };
        }
        Err(e) => return Err(e),
    };
    match container.status(ctx) {
        Status::Stopped | Status::Created => {}
        _ if args.force => {}
        status => {
            return Err(Error::State(format!(
                "cannot delete container {} that is not stopped: {status}",
                args.id
            )))
        }
    }
    // Destroying kills whatever still runs in the container's cgroup.
    container.destroy(ctx)?;
    Ok(0)
}

/// Removes what a create that died half-way left: its cgroup (with any
/// process in it) and its state directory.
fn remove_stale(ctx: &Context, id: &str) -> Result<()> {
    let Some(locked) = ctx.root.lock_stale(id)? else {
        return Ok(());
    };
    if let Ok(spec) = locked.load_spec() {
        let cgroup = ctx.runtime()?.cgroup(id, &spec)?;
        cgroup.kill_all()?;
        cgroup.destroy()?;
    }
    locked.remove()
}
