//! `kill`: sends a signal to a container's init, or with `--all` to every
//! process in its cgroup.

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::args::KillArgs;
use crate::commands::common::{Container, Context};
use crate::error::{Error, Result};
use crate::signals;
use crate::state::Status;

/// `strata kill [--all] ID [SIGNAL]`.
pub fn run(ctx: &Context, args: &KillArgs) -> Result<i32> {
    let signal = signals::parse(args.signal.as_deref().unwrap_or("SIGTERM"))?;
    let container = Container::open(ctx, &args.id)?;
    let status = container.status(ctx);
    if status == Status::Stopped {
        return if args.all {
            Ok(0)
        } else {
            Err(Error::NotRunning(args.id.clone()))
        };
    }
    if args.all {
        let pids = container.cgroup(ctx)?.procs()?;
        for pid in pids {
            match kill(Pid::from_raw(pid), signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => return Err(Error::io(format!("signalling {pid}"), e.into())),
            }
        }
        thaw_for_kill(ctx, &container, status, signal)?;
        return Ok(0);
    }
    match kill(Pid::from_raw(container.record.pid), signal) {
        Ok(()) => thaw_for_kill(ctx, &container, status, signal).map(|()| 0),
        Err(Errno::ESRCH) => Err(Error::NotRunning(args.id.clone())),
        Err(e) => Err(Error::io(
            format!("signalling {}", container.record.pid),
            e.into(),
        )),
    }
}

/// Frozen processes act on SIGKILL only once thawed: a paused container
/// is thawed after one.
fn thaw_for_kill(
    ctx: &Context,
    container: &Container,
    status: Status,
    signal: signals::Sig,
) -> Result<()> {
    if status == Status::Paused && signal == Some(Signal::SIGKILL) {
        container.cgroup(ctx)?.thaw()?;
    }
    Ok(())
}
