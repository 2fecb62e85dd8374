//! The shim's containers and their processes, and the rules of their states.
//!
//! Every task-service request lands here as plain Rust values. A process is
//! `Created`, then `Running`, then `Stopped`; each operation checks the state
//! it needs first, so containerd gets the errors it expects (for example
//! `FailedPrecondition` for deleting a running process).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_spec::runtime::Spec;
use strata_backend::{Container, CreateRequest, Exit, ExitCell, Process, Stdio};
use strata_config::RuntimeOptions;

use crate::class::BackendSelector;
use crate::error::{Result, TaskError};
use crate::events::{Event, EventSender};
use crate::rootfs::{self, RootfsMount};

/// How long the init's exit waits for exec'd processes to report theirs, so
/// that containerd sees the init exit last.
const EXEC_EXIT_GRACE: Duration = Duration::from_secs(2);

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created, waiting for start.
    Created,
    /// Started and not yet exited.
    Running,
    /// Exited.
    Stopped,
}

/// A request to create a container.
#[derive(Debug)]
pub struct CreateTask {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// What to mount as the rootfs.
    pub rootfs: Vec<RootfsMount>,
    /// The init process's stdio.
    pub stdio: Stdio,
    /// Runtime options containerd passed, if they were ours.
    pub options: Option<RuntimeOptions>,
}

/// A snapshot of a process for the State request.
#[derive(Debug, Clone)]
pub struct ProcessState {
    /// Its pid (0 before an exec starts).
    pub pid: u32,
    /// Its status.
    pub status: Status,
    /// Its stdio.
    pub stdio: Stdio,
    /// Its exit, once stopped.
    pub exit: Option<Exit>,
}

/// One exec'd process.
struct ExecEntry {
    spec: oci_spec::runtime::Process,
    stdio: Stdio,
    process: Mutex<Option<Arc<dyn Process>>>,
    exit: ExitCell,
}

impl ExecEntry {
    fn status(&self) -> Status {
        if self.exit.get().is_some() {
            Status::Stopped
        } else if self.process.lock().unwrap().is_some() {
            Status::Running
        } else {
            Status::Created
        }
    }

    fn pid(&self) -> u32 {
        self.process.lock().unwrap().as_ref().map_or(0, |p| p.pid())
    }

    fn running(&self) -> Option<Arc<dyn Process>> {
        self.process.lock().unwrap().clone()
    }
}

/// One container.
struct Task {
    id: String,
    bundle: PathBuf,
    container: Arc<dyn Container>,
    stdio: Stdio,
    started: Mutex<bool>,
    exit: ExitCell,
    execs: Mutex<HashMap<String, Arc<ExecEntry>>>,
}

impl Task {
    fn status(&self) -> Status {
        if self.exit.get().is_some() {
            Status::Stopped
        } else if *self.started.lock().unwrap() {
            Status::Running
        } else {
            Status::Created
        }
    }

    fn exec(&self, exec_id: &str) -> Result<Arc<ExecEntry>> {
        self.execs
            .lock()
            .unwrap()
            .get(exec_id)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(format!("process {exec_id}")))
    }
}

/// All containers this shim serves.
pub struct Tasks {
    tasks: Mutex<HashMap<String, Arc<Task>>>,
    events: EventSender,
    selector: BackendSelector,
}

impl Tasks {
    /// An empty set that reports through `events` and picks backends with `selector`.
    pub fn new(events: EventSender, selector: BackendSelector) -> Self {
        Tasks {
            tasks: Mutex::new(HashMap::new()),
            events,
            selector,
        }
    }

    fn task(&self, id: &str) -> Result<Arc<Task>> {
        self.tasks
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(format!("container {id}")))
    }

    /// Whether no container is left.
    pub fn is_empty(&self) -> bool {
        self.tasks.lock().unwrap().is_empty()
    }

    /// Creates a container whose init waits for start; returns the init's pid.
    pub async fn create(&self, request: CreateTask) -> Result<u32> {
        if self.tasks.lock().unwrap().contains_key(&request.id) {
            return Err(TaskError::AlreadyExists(format!("container {}", request.id)));
        }
        let config = request.bundle.join("config.json");
        let spec = Spec::load(&config)
            .map_err(|e| TaskError::InvalidArgument(format!("reading {}: {e}", config.display())))?;
        let (kind, backend) = self.selector.select(&spec, request.options.as_ref())?;
        rootfs::mount(&request.bundle, &request.rootfs).await?;
        let created = async {
            BackendSelector::mark(&request.bundle, kind)?;
            let container = backend
                .create(CreateRequest {
                    id: request.id.clone(),
                    bundle: request.bundle.clone(),
                    state_dir: request.bundle.clone(),
                    spec,
                    stdio: request.stdio.clone(),
                })
                .await?;
            Ok::<_, TaskError>(container)
        }
        .await;
        let container: Arc<dyn Container> = match created {
            Ok(c) => Arc::from(c),
            Err(e) => {
                BackendSelector::unmark(&request.bundle);
                if !request.rootfs.is_empty() {
                    rootfs::unmount(&request.bundle).await;
                }
                return Err(e);
            }
        };
        let pid = container.init().pid();
        let task = Arc::new(Task {
            id: request.id.clone(),
            bundle: request.bundle.clone(),
            container,
            stdio: request.stdio,
            started: Mutex::new(false),
            exit: ExitCell::default(),
            execs: Mutex::new(HashMap::new()),
        });
        self.tasks.lock().unwrap().insert(request.id.clone(), task.clone());
        self.events.send(Event::Create {
            id: request.id,
            bundle: request.bundle.display().to_string(),
            pid,
        });
        self.watch_init(task);
        Ok(pid)
    }

    /// Reports the init's exit once it and every exec'd process are done.
    fn watch_init(&self, task: Arc<Task>) {
        let events = self.events.clone();
        tokio::spawn(async move {
            let exit = task.container.init().wait().await;
            let execs: Vec<_> = task.execs.lock().unwrap().values().cloned().collect();
            for exec in execs {
                if exec.status() == Status::Running {
                    let _ = tokio::time::timeout(EXEC_EXIT_GRACE, exec.exit.wait()).await;
                }
            }
            task.exit.set(exit);
            events.send(Event::Exit {
                id: task.id.clone(),
                process_id: task.id.clone(),
                pid: task.container.init().pid(),
                exit,
            });
        });
    }

    /// Starts the init (no exec id) or an exec'd process; returns its pid.
    pub async fn start(&self, id: &str, exec_id: Option<&str>) -> Result<u32> {
        let task = self.task(id)?;
        let Some(exec_id) = exec_id else {
            if task.status() != Status::Created {
                return Err(TaskError::FailedPrecondition(format!(
                    "cannot start container {id}: it is {:?}",
                    task.status()
                )));
            }
            task.container.start().await?;
            *task.started.lock().unwrap() = true;
            let pid = task.container.init().pid();
            self.events.send(Event::Start { id: id.into(), pid });
            return Ok(pid);
        };
        let entry = task.exec(exec_id)?;
        if entry.status() != Status::Created {
            return Err(TaskError::FailedPrecondition(format!(
                "cannot start process {exec_id}: it is {:?}",
                entry.status()
            )));
        }
        if task.status() == Status::Stopped {
            return Err(TaskError::FailedPrecondition(format!(
                "cannot start process {exec_id}: container {id} is not running"
            )));
        }
        let process: Arc<dyn Process> = Arc::from(
            task.container
                .exec(exec_id, entry.spec.clone(), entry.stdio.clone())
                .await?,
        );
        let pid = process.pid();
        *entry.process.lock().unwrap() = Some(process.clone());
        self.events.send(Event::ExecStarted {
            id: id.into(),
            exec_id: exec_id.into(),
            pid,
        });
        let events = self.events.clone();
        let (id, exec_id) = (id.to_owned(), exec_id.to_owned());
        tokio::spawn(async move {
            let exit = process.wait().await;
            entry.exit.set(exit);
            events.send(Event::Exit {
                id,
                process_id: exec_id,
                pid,
                exit,
            });
        });
        Ok(pid)
    }

    /// Registers an exec'd process, to be started later.
    pub fn exec(&self, id: &str, exec_id: &str, spec: oci_spec::runtime::Process, stdio: Stdio) -> Result<()> {
        let task = self.task(id)?;
        if task.status() == Status::Stopped {
            return Err(TaskError::FailedPrecondition(format!("container {id} is not running")));
        }
        {
            let mut execs = task.execs.lock().unwrap();
            if execs.contains_key(exec_id) {
                return Err(TaskError::AlreadyExists(format!("process {exec_id}")));
            }
            execs.insert(
                exec_id.to_owned(),
                Arc::new(ExecEntry {
                    spec,
                    stdio,
                    process: Mutex::new(None),
                    exit: ExitCell::default(),
                }),
            );
        }
        self.events.send(Event::ExecAdded {
            id: id.into(),
            exec_id: exec_id.into(),
        });
        Ok(())
    }

    /// Sends a signal to the init, an exec'd process, or (`all`) every process.
    pub async fn kill(&self, id: &str, exec_id: Option<&str>, signal: u32, all: bool) -> Result<()> {
        let task = self.task(id)?;
        if let Some(exec_id) = exec_id {
            let entry = task.exec(exec_id)?;
            let process = entry
                .running()
                .filter(|_| entry.status() == Status::Running)
                .ok_or_else(|| TaskError::NotFound(format!("process {exec_id}: not running")))?;
            return Ok(process.kill(signal).await?);
        }
        if task.status() == Status::Stopped {
            return Err(TaskError::NotFound(format!("container {id}: process already finished")));
        }
        if all {
            task.container.kill_all(signal).await?;
        } else {
            task.container.init().kill(signal).await?;
        }
        Ok(())
    }

    /// Waits for the init or an exec'd process to exit.
    pub async fn wait(&self, id: &str, exec_id: Option<&str>) -> Result<Exit> {
        let task = self.task(id)?;
        match exec_id {
            None => Ok(task.exit.wait().await),
            Some(exec_id) => Ok(task.exec(exec_id)?.exit.wait().await),
        }
    }

    /// Describes the init or an exec'd process.
    pub fn state(&self, id: &str, exec_id: Option<&str>) -> Result<(PathBuf, ProcessState)> {
        let task = self.task(id)?;
        let state = match exec_id {
            None => ProcessState {
                pid: task.container.init().pid(),
                status: task.status(),
                stdio: task.stdio.clone(),
                exit: task.exit.get(),
            },
            Some(exec_id) => {
                let entry = task.exec(exec_id)?;
                ProcessState {
                    pid: entry.pid(),
                    status: entry.status(),
                    stdio: entry.stdio.clone(),
                    exit: entry.exit.get(),
                }
            }
        };
        Ok((task.bundle.clone(), state))
    }

    /// The pids of the container's processes.
    pub async fn pids(&self, id: &str) -> Result<Vec<u32>> {
        Ok(self.task(id)?.container.pids().await?)
    }

    /// Closes the stdin of the init or an exec'd process.
    pub async fn close_stdin(&self, id: &str, exec_id: Option<&str>) -> Result<()> {
        let task = self.task(id)?;
        match exec_id {
            None => task.container.init().close_stdin().await,
            Some(exec_id) => {
                if let Some(process) = task.exec(exec_id)?.running() {
                    process.close_stdin().await;
                }
            }
        }
        Ok(())
    }

    /// The init's pid, for Connect.
    pub fn init_pid(&self, id: &str) -> Result<u32> {
        Ok(self.task(id)?.container.init().pid())
    }

    /// Deletes an exec'd process, or the whole container; returns the pid and exit.
    pub async fn delete(&self, id: &str, exec_id: Option<&str>) -> Result<(u32, Exit)> {
        let task = self.task(id)?;
        if let Some(exec_id) = exec_id {
            let entry = task.exec(exec_id)?;
            if entry.status() == Status::Running {
                return Err(TaskError::FailedPrecondition(format!(
                    "cannot delete process {exec_id}: it is running"
                )));
            }
            task.execs.lock().unwrap().remove(exec_id);
            return Ok((entry.pid(), entry.exit.get().unwrap_or_else(|| Exit::now(0))));
        }
        if task.status() == Status::Running {
            return Err(TaskError::FailedPrecondition(format!(
                "cannot delete container {id}: its init process is running"
            )));
        }
        task.container.destroy().await?;
        // A container deleted before it ran was killed by destroy; collect that exit.
        let exit = match tokio::time::timeout(Duration::from_secs(10), task.exit.wait()).await {
            Ok(exit) => exit,
            Err(_) => Exit::now(137),
        };
        rootfs::unmount(&task.bundle).await;
        BackendSelector::unmark(&task.bundle);
        self.tasks.lock().unwrap().remove(id);
        let pid = task.container.init().pid();
        self.events.send(Event::Delete {
            id: id.into(),
            pid,
            exit,
        });
        Ok((pid, exit))
    }

    /// Cleans up after a shim that died: the backend's leftovers and the rootfs.
    pub async fn cleanup(selector: &BackendSelector, id: &str, bundle: &std::path::Path) -> Result<()> {
        if let Some(kind) = BackendSelector::marked(bundle) {
            let backend = selector.backend(kind)?;
            backend.cleanup(id, bundle, bundle).await?;
        }
        rootfs::unmount(bundle).await;
        BackendSelector::unmark(bundle);
        Ok(())
    }
}
