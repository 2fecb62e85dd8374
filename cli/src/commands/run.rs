//! `run`: `create` and `start` in one; in the foreground it then waits for
//! the container's init, passing signals on, deletes the container and
//! exits with the init's exit code (128 plus the signal that killed it).

use crate::args::RunArgs;
use crate::commands::common::{Container, Context};
use crate::commands::create::{abandon, create};
use crate::console::Relay;
use crate::error::{Error, Result};
use crate::signals::{wait_forwarding, Blocked};

/// `strata run`.
pub fn run(ctx: &Context, args: &RunArgs) -> Result<i32> {
    let (container, terminal) = create(ctx, &args.create, args.detach)?;
    let rt = ctx.runtime()?;
    // Signals are held from before the start, so that none reaches this
    // process between the start and the wait.
    let blocked = if args.detach {
        None
    } else {
        Some(Blocked::block()?)
    };
    if let Err(e) = rt.start(
        container.id(),
        &container.record.bundle,
        &container.spec,
        container.locked.dir(),
        container.record.pid,
    ) {
        abandon(ctx, container);
        return Err(e.into());
    }
    let Some(blocked) = blocked else {
        return Ok(0);
    };
    let id = container.id().to_owned();
    let pid = container.record.pid;
    // Other commands (kill, state, exec) may act on the container while it runs.
    drop(container);
    let relay = terminal.map(Relay::start).transpose()?;
    let code = wait_forwarding(pid, &blocked, relay.as_ref());
    if let Some(relay) = relay {
        relay.finish();
    }
    let code = code?;
    if !args.keep {
        match Container::open(ctx, &id) {
            Ok(container) => container.destroy(ctx)?,
            // Deleted by someone else meanwhile.
            Err(Error::NotExist(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(code)
}
