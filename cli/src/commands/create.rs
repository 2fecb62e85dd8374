//! `create`: builds a container whose process waits for `start`. A failed
//! create leaves nothing behind: no state directory, cgroup or process.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::time::Duration;

use crate::args::CreateArgs;
use crate::class;
use crate::commands::common::{bundle_dir, check_console, load_spec, Container, Context};
use crate::console;
use crate::error::{Error, Result};
use crate::output::write_pid_file;
use crate::procfs;
use crate::signals::{reap_children, reap_exited};
use crate::state::{Locked, Record};
use crate::timefmt::Timestamp;

/// How long a failed create waits for the processes it killed.
const REAP_PATIENCE: Duration = Duration::from_secs(2);

/// `strata create`.
pub fn run(ctx: &Context, args: &CreateArgs) -> Result<i32> {
    create(ctx, args, true).map(|_| 0)
}

/// Creates the container `args` describe. A terminal master is sent to the
/// console socket when one is given; otherwise (a foreground `run`) it is
/// returned. `detach` is false only for a foreground `run`.
pub fn create(
    ctx: &Context,
    args: &CreateArgs,
    detach: bool,
) -> Result<(Container, Option<OwnedFd>)> {
    crate::state::check_id(&args.id)?;
    let bundle = bundle_dir(args.bundle.as_deref())?;
    let spec = load_spec(&bundle)?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Spec("process property must not be empty".into()))?;
    let terminal = process.terminal().unwrap_or(false);
    check_console(terminal, args.console_socket.is_some(), detach)?;
    let config = class::load(ctx.config.as_deref())?;
    let class = class::choose(&config, ctx.class.as_deref(), &spec)?;
    let rt = ctx.runtime()?;
    let locked = ctx.root.create(&args.id)?;
    log::debug!("creating container {:?} from {}", args.id, bundle.display());
    if let Err(e) = locked.save_spec(&spec) {
        let _ = locked.remove();
        return Err(e);
    }
    let made = match rt.create(&args.id, &bundle, &spec, locked.dir(), args.preserve_fds) {
        Ok(made) => made,
        Err(e) => {
            // The backend has killed and reaped whatever it had forked.
            let _ = locked.remove();
            return Err(e.into());
        }
    };
    let rootfs = spec
        .root()
        .as_ref()
        .map(|r| bundle.join(r.path()))
        .unwrap_or_else(|| bundle.join("rootfs"));
    let record = Record {
        id: args.id.clone(),
        pid: made.pid,
        pid_start: procfs::start_time(made.pid).unwrap_or(0),
        bundle: bundle.clone(),
        rootfs,
        created: Timestamp::now().rfc3339_nano(),
        oci_version: spec.version().clone(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        class,
        config: locked.spec_path(),
    };
    reap_exited(None);
    let finished = finish(&locked, &record, made.terminal, args);
    let container = Container {
        locked,
        record,
        spec,
    };
    match finished {
        Ok(terminal) => Ok((container, terminal)),
        Err(e) => {
            abandon(ctx, container);
            Err(e)
        }
    }
}

/// Records the container, hands over its terminal and writes the pid file.
fn finish(
    locked: &Locked,
    record: &Record,
    terminal: Option<OwnedFd>,
    args: &CreateArgs,
) -> Result<Option<OwnedFd>> {
    if record.pid_start == 0 {
        return Err(Error::State(format!(
            "the container's init (pid {}) exited during create",
            record.pid
        )));
    }
    locked.save(record)?;
    let terminal = match (terminal, &args.console_socket) {
        (Some(master), Some(socket)) => {
            console::send_master(socket, &master)?;
            None
        }
        (terminal, _) => terminal,
    };
    if let Some(pid_file) = &args.pid_file {
        write_pid_file(pid_file, record.pid)?;
    }
    Ok(terminal)
}

/// Undoes a create that failed after the container was made.
pub fn abandon(ctx: &Context, container: Container) {
    let locked_dir = container.locked.dir().to_owned();
    if let Err(e) = container.destroy(ctx) {
        log::warn!("cleaning up after a failed create: {e}");
        let _ = std::fs::remove_dir_all(locked_dir);
    }
    reap_children(REAP_PATIENCE);
}
