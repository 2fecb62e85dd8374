//! What the verbs share: the global settings, the backend, an existing
//! container opened and locked, and the terminal rules of `create`, `run`
//! and `exec`.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;
use strata_cgroups::Cgroup;
use strata_native::DirectRuntime;

use crate::error::{Error, Result};
use crate::procfs;
use crate::state::{Locked, Record, Root, Status};

/// The binary the backend re-executes to build container processes.
const HELPER: &str = "/proc/self/exe";

/// How long `delete` waits for a killed init to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The global flags, and the backend once a command needs it.
pub struct Context {
    /// The state root.
    pub root: Root,
    /// `--class`.
    pub class: Option<String>,
    /// `--config`.
    pub config: Option<PathBuf>,
    runtime: OnceCell<DirectRuntime>,
}

impl Context {
    /// The context of one command.
    pub fn new(root: PathBuf, class: Option<String>, config: Option<PathBuf>) -> Context {
        Context {
            root: Root::new(root),
            class,
            config,
            runtime: OnceCell::new(),
        }
    }

    /// The native backend (made on first use: it detects the cgroups).
    pub fn runtime(&self) -> Result<&DirectRuntime> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = DirectRuntime::new(PathBuf::from(HELPER))?;
        Ok(self.runtime.get_or_init(|| rt))
    }
}

/// An existing container, locked for the duration of the command.
pub struct Container {
    /// Its locked state directory.
    pub locked: Locked,
    /// Its record.
    pub record: Record,
    /// The spec it was created from.
    pub spec: Spec,
}

impl Container {
    /// Opens and locks container `id`.
    pub fn open(ctx: &Context, id: &str) -> Result<Container> {
        let locked = ctx.root.lock(id)?;
        let record = locked.load()?;
        let spec = locked.load_spec()?;
        Ok(Container {
            locked,
            record,
            spec,
        })
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The container's cgroup.
    pub fn cgroup(&self, ctx: &Context) -> Result<Cgroup> {
        Ok(ctx.runtime()?.cgroup(self.id(), &self.spec)?)
    }

    /// The container's status now.
    pub fn status(&self, ctx: &Context) -> Status {
        let cgroup = self.cgroup(ctx).ok();
        self.locked.status(&self.record, || {
            cgroup
                .as_ref()
                .is_some_and(|cg| cg.is_frozen().unwrap_or(false))
        })
    }

    /// Whether the init still runs.
    pub fn init_running(&self) -> bool {
        procfs::is_running(self.record.pid, self.record.pid_start)
    }

    /// Kills what is left of the container, removes its cgroup, runs the
    /// `poststop` hooks and removes its state.
    pub fn destroy(self, ctx: &Context) -> Result<()> {
        let rt = ctx.runtime()?;
        let destroyed = rt.destroy(
            self.id(),
            &self.record.bundle,
            &self.spec,
            self.locked.dir(),
            self.record.pid,
        );
        self.wait_init_exit();
        if let Err(e) = destroyed {
            // The state stays, so that the delete can be retried.
            return Err(e.into());
        }
        self.locked.remove()
    }

    /// Waits (up to a limit) until the init has exited.
    pub fn wait_init_exit(&self) {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while self.init_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The bundle directory: `--bundle`, or the current directory.
pub fn bundle_dir(flag: Option<&Path>) -> Result<PathBuf> {
    crate::error::absolute(flag.unwrap_or(Path::new(".")))
}

/// Reads and parses the bundle's `config.json`.
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Spec(
                "JSON specification file config.json not found".to_owned(),
            ))
        }
        Err(e) => return Err(Error::path("reading", &path, e)),
    };
    serde_json::from_slice(&text)
        .map_err(|e| Error::Spec(format!("parsing {}: {e}", path.display())))
}

/// The rules for terminals and console sockets: a terminal of a command
/// that returns at once must go to a console socket, and a console socket
/// is only for such a terminal (a foreground command relays its terminal
/// itself).
pub fn check_console(terminal: bool, has_socket: bool, detach: bool) -> Result<()> {
    if terminal && detach && !has_socket {
        return Err(Error::Usage(
            "cannot allocate tty if strata will detach without setting console socket".into(),
        ));
    }
    if (!detach || !terminal) && has_socket {
        return Err(Error::Usage(
            "cannot use console socket if strata will not detach or allocate tty".into(),
        ));
    }
    Ok(())
}
