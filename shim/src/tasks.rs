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

use crate::class::{BackendSelector, Backends};
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
    /// Frozen by Pause.
    Paused,
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

/// Reads a bundle's `config.json`; a field that does not parse is named by
/// its path, e.g. `linux.namespaces[0].type: unknown variant "bogus"`.
fn load_spec(path: &std::path::Path) -> Result<Spec> {
    let fail = |what: String| TaskError::InvalidArgument(format!("{}: {what}", path.display()));
    let text = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut json = serde_json::Deserializer::from_slice(&text);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = e.path().to_string();
        fail(format!("{field}: {}", e.into_inner()))
    })
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
    paused: Mutex<bool>,
    exit: ExitCell,
    /// Reports OOM kills until the container is deleted.
    oom_watch: Mutex<Option<tokio::task::JoinHandle<()>>>,
    execs: Mutex<HashMap<String, Arc<ExecEntry>>>,
}

impl Task {
    fn status(&self) -> Status {
        if self.exit.get().is_some() {
            Status::Stopped
        } else if *self.paused.lock().unwrap() {
            Status::Paused
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
    backends: Box<dyn Backends>,
}

impl Tasks {
    /// An empty set that reports through `events` and gets its backends from `backends`.
    pub fn new(events: EventSender, backends: Box<dyn Backends>) -> Self {
        Tasks {
            tasks: Mutex::new(HashMap::new()),
            events,
            backends,
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
            return Err(TaskError::AlreadyExists(format!(
                "container {}",
                request.id
            )));
        }
        let config = request.bundle.join("config.json");
        let spec = load_spec(&config)?;
        let (kind, backend) = self.backends.select(&spec, request.options.as_ref())?;
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
            paused: Mutex::new(false),
            exit: ExitCell::default(),
            oom_watch: Mutex::new(None),
            execs: Mutex::new(HashMap::new()),
        });
        self.tasks
            .lock()
            .unwrap()
            .insert(request.id.clone(), task.clone());
        self.events.send(Event::Create {
            id: request.id,
            bundle: request.bundle.display().to_string(),
            rootfs: request.rootfs,
            stdio: task.stdio.clone(),
            pid,
        });
        self.watch_oom(&task);
        self.watch_init(task);
        Ok(pid)
    }

    /// Reports each OOM kill in the container, for as long as it exists.
    fn watch_oom(&self, task: &Arc<Task>) {
        let events = self.events.clone();
        let watched = task.clone();
        let handle = tokio::spawn(async move {
            loop {
                match watched.container.oom().await {
                    Ok(_) => events.send(Event::Oom {
                        id: watched.id.clone(),
                    }),
                    Err(e) => {
                        log::debug!("container {}: no more OOM events: {e}", watched.id);
                        return;
                    }
                }
            }
        });
        *task.oom_watch.lock().unwrap() = Some(handle);
    }

    /// Freezes a running container.
    pub async fn pause(&self, id: &str) -> Result<()> {
        let task = self.task(id)?;
        if task.status() != Status::Running {
            return Err(TaskError::FailedPrecondition(format!(
                "cannot pause container {id}: it is {:?}",
                task.status()
            )));
        }
        task.container.pause().await?;
        *task.paused.lock().unwrap() = true;
        self.events.send(Event::Paused { id: id.into() });
        Ok(())
    }

    /// Thaws a paused container.
    pub async fn resume(&self, id: &str) -> Result<()> {
        let task = self.task(id)?;
        if task.status() != Status::Paused {
            return Err(TaskError::FailedPrecondition(format!(
                "cannot resume container {id}: it is {:?}",
                task.status()
            )));
        }
        task.container.resume().await?;
        *task.paused.lock().unwrap() = false;
        self.events.send(Event::Resumed { id: id.into() });
        Ok(())
    }

    /// Changes the resource limits of a container that has not stopped.
    pub async fn update(
        &self,
        id: &str,
        resources: oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let task = self.task(id)?;
        if task.status() == Status::Stopped {
            return Err(TaskError::FailedPrecondition(format!(
                "container {id} has stopped"
            )));
        }
        Ok(task.container.update(resources).await?)
    }

    /// The container's resource usage.
    pub async fn stats(&self, id: &str) -> Result<strata_backend::Metrics> {
        Ok(self.task(id)?.container.stats().await?)
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
    pub fn exec(
        &self,
        id: &str,
        exec_id: &str,
        spec: oci_spec::runtime::Process,
        stdio: Stdio,
    ) -> Result<()> {
        let task = self.task(id)?;
        if task.status() == Status::Stopped {
            return Err(TaskError::FailedPrecondition(format!(
                "container {id} is not running"
            )));
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
    pub async fn kill(
        &self,
        id: &str,
        exec_id: Option<&str>,
        signal: u32,
        all: bool,
    ) -> Result<()> {
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
            return Err(TaskError::NotFound(format!(
                "container {id}: process already finished"
            )));
        }
        if all {
            task.container.kill_all(signal).await?;
        } else {
            task.container.init().kill(signal).await?;
        }
        // Frozen processes act on SIGKILL only once thawed.
        if signal == libc::SIGKILL as u32 && task.status() == Status::Paused {
            task.container.resume().await?;
            *task.paused.lock().unwrap() = false;
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

    /// Resizes the terminal of the init or an exec'd process.
    pub async fn resize_pty(
        &self,
        id: &str,
        exec_id: Option<&str>,
        width: u32,
        height: u32,
    ) -> Result<()> {
        let task = self.task(id)?;
        match exec_id {
            None => Ok(task.container.init().resize_pty(width, height).await?),
            Some(exec_id) => {
                let process = task.exec(exec_id)?.running().ok_or_else(|| {
                    TaskError::FailedPrecondition(format!("process {exec_id} is not running"))
                })?;
                Ok(process.resize_pty(width, height).await?)
            }
        }
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
            return Ok((
                entry.pid(),
                entry.exit.get().unwrap_or_else(|| Exit::now(0)),
            ));
        }
        if matches!(task.status(), Status::Running | Status::Paused) {
            return Err(TaskError::FailedPrecondition(format!(
                "cannot delete container {id}: its init process is running"
            )));
        }
        if let Some(watch) = task.oom_watch.lock().unwrap().take() {
            watch.abort();
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
    pub async fn cleanup(
        backends: &dyn Backends,
        id: &str,
        bundle: &std::path::Path,
    ) -> Result<()> {
        if let Some(kind) = BackendSelector::marked(bundle) {
            let backend = backends.backend(kind)?;
            backend.cleanup(id, bundle, bundle).await?;
        }
        rootfs::unmount(bundle).await;
        BackendSelector::unmark(bundle);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The state rules, against a fake backend. The real backends are driven
    //! through the same calls by the end-to-end tests.

    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use strata_backend::{Backend, Error as BackendError};
    use strata_config::BackendKind;

    use super::*;
    use crate::events::testing::Recorder;

    /// A process that exits when told to.
    #[derive(Default)]
    struct FakeProcess {
        pid: u32,
        exit: ExitCell,
        signals: Mutex<Vec<u32>>,
    }

    #[async_trait]
    impl Process for FakeProcess {
        fn pid(&self) -> u32 {
            self.pid
        }
        async fn kill(&self, signal: u32) -> strata_backend::Result<()> {
            self.signals.lock().unwrap().push(signal);
            if signal == 9 {
                self.exit.set(Exit::now(137));
            }
            Ok(())
        }
        async fn wait(&self) -> Exit {
            self.exit.wait().await
        }
        fn try_exit(&self) -> Option<Exit> {
            self.exit.get()
        }
        async fn close_stdin(&self) {}
        async fn resize_pty(&self, _width: u32, _height: u32) -> strata_backend::Result<()> {
            Ok(())
        }
    }

    struct FakeContainer {
        init: Arc<FakeProcess>,
        execs: Arc<Mutex<Vec<Arc<FakeProcess>>>>,
        next_pid: AtomicU32,
    }

    /// Lets a process of the fake be shared between the container and the test.
    struct Shared(Arc<FakeProcess>);

    #[async_trait]
    impl Process for Shared {
        fn pid(&self) -> u32 {
            self.0.pid()
        }
        async fn kill(&self, signal: u32) -> strata_backend::Result<()> {
            self.0.kill(signal).await
        }
        async fn wait(&self) -> Exit {
            self.0.wait().await
        }
        fn try_exit(&self) -> Option<Exit> {
            self.0.try_exit()
        }
        async fn close_stdin(&self) {}
        async fn resize_pty(&self, width: u32, height: u32) -> strata_backend::Result<()> {
            self.0.resize_pty(width, height).await
        }
    }

    #[async_trait]
    impl Container for FakeContainer {
        fn init(&self) -> &dyn Process {
            self.init.as_ref()
        }
        async fn start(&self) -> strata_backend::Result<()> {
            Ok(())
        }
        async fn exec(
            &self,
            _exec_id: &str,
            _process: oci_spec::runtime::Process,
            _stdio: Stdio,
        ) -> strata_backend::Result<Box<dyn Process>> {
            let process = Arc::new(FakeProcess {
                pid: self.next_pid.fetch_add(1, Ordering::SeqCst),
                ..Default::default()
            });
            self.execs.lock().unwrap().push(process.clone());
            Ok(Box::new(Shared(process)))
        }
        async fn kill_all(&self, signal: u32) -> strata_backend::Result<()> {
            self.init.kill(signal).await
        }
        async fn pids(&self) -> strata_backend::Result<Vec<u32>> {
            Ok(vec![self.init.pid])
        }
        async fn pause(&self) -> strata_backend::Result<()> {
            Ok(())
        }
        async fn resume(&self) -> strata_backend::Result<()> {
            Ok(())
        }
        async fn update(
            &self,
            _resources: oci_spec::runtime::LinuxResources,
        ) -> strata_backend::Result<()> {
            Ok(())
        }
        async fn stats(&self) -> strata_backend::Result<strata_backend::Metrics> {
            Err(BackendError::Process("no statistics in the fake".into()))
        }
        async fn oom(&self) -> strata_backend::Result<u64> {
            Err(BackendError::Process("no OOM events in the fake".into()))
        }
        async fn destroy(&self) -> strata_backend::Result<()> {
            self.init.exit.set(Exit::now(137));
            Ok(())
        }
    }

    /// Hands out one prepared container.
    struct FakeBackend {
        init: Arc<FakeProcess>,
        execs: Arc<Mutex<Vec<Arc<FakeProcess>>>>,
        fail: bool,
    }

    #[async_trait]
    impl Backend for FakeBackend {
        async fn create(
            &self,
            _request: CreateRequest,
        ) -> strata_backend::Result<Box<dyn Container>> {
            if self.fail {
                return Err(BackendError::Process(
                    "exec: \"nope\": executable file not found in $PATH".into(),
                ));
            }
            Ok(Box::new(FakeContainer {
                init: self.init.clone(),
                execs: self.execs.clone(),
                next_pid: AtomicU32::new(200),
            }))
        }
        async fn cleanup(
            &self,
            _id: &str,
            _bundle: &std::path::Path,
            _state: &std::path::Path,
        ) -> strata_backend::Result<()> {
            Ok(())
        }
    }

    struct FakeBackends(Arc<FakeBackend>);

    impl Backends for FakeBackends {
        fn select(
            &self,
            _spec: &Spec,
            _options: Option<&RuntimeOptions>,
        ) -> Result<(BackendKind, Arc<dyn Backend>)> {
            Ok((BackendKind::Native, self.0.clone()))
        }
        fn backend(&self, _kind: BackendKind) -> Result<Arc<dyn Backend>> {
            Ok(self.0.clone())
        }
    }

    struct Fixture {
        tasks: Tasks,
        init: Arc<FakeProcess>,
        execs: Arc<Mutex<Vec<Arc<FakeProcess>>>>,
        topics: Recorder,
        bundle: tempfile::TempDir,
    }

    fn fixture(fail: bool) -> Fixture {
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(
            bundle.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}}"#,
        )
        .unwrap();
        let init = Arc::new(FakeProcess {
            pid: 100,
            ..Default::default()
        });
        let execs = Arc::new(Mutex::new(Vec::new()));
        let topics = Recorder::default();
        let backend = Arc::new(FakeBackend {
            init: init.clone(),
            execs: execs.clone(),
            fail,
        });
        Fixture {
            tasks: Tasks::new(
                EventSender::start(topics.clone()),
                Box::new(FakeBackends(backend)),
            ),
            init,
            execs,
            topics,
            bundle,
        }
    }

    impl Fixture {
        async fn create(&self) -> Result<u32> {
            self.tasks
                .create(CreateTask {
                    id: "c".into(),
                    bundle: self.bundle.path().to_owned(),
                    rootfs: Vec::new(),
                    stdio: Stdio::default(),
                    options: None,
                })
                .await
        }

        async fn topics(&self, count: usize) -> Vec<&'static str> {
            for _ in 0..200 {
                if self.topics.0.lock().unwrap().len() >= count {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            self.topics.0.lock().unwrap().clone()
        }
    }

    fn process_spec() -> oci_spec::runtime::Process {
        serde_json::from_str(r#"{"cwd":"/","args":["true"],"user":{"uid":0,"gid":0}}"#).unwrap()
    }

    use containerd_shim::protos::topics::*;

    #[tokio::test]
    async fn the_lifecycle_moves_through_its_states() {
        let f = fixture(false);
        assert_eq!(f.create().await.unwrap(), 100);
        assert_eq!(f.tasks.state("c", None).unwrap().1.status, Status::Created);
        assert!(matches!(f.create().await, Err(TaskError::AlreadyExists(_))));
        assert_eq!(f.tasks.start("c", None).await.unwrap(), 100);
        assert_eq!(f.tasks.state("c", None).unwrap().1.status, Status::Running);
        assert!(matches!(
            f.tasks.start("c", None).await,
            Err(TaskError::FailedPrecondition(_))
        ));
        assert!(matches!(
            f.tasks.delete("c", None).await,
            Err(TaskError::FailedPrecondition(_))
        ));
        f.tasks.kill("c", None, 9, false).await.unwrap();
        assert_eq!(f.tasks.wait("c", None).await.unwrap().code, 137);
        assert_eq!(f.tasks.state("c", None).unwrap().1.status, Status::Stopped);
        assert!(matches!(
            f.tasks.kill("c", None, 9, false).await,
            Err(TaskError::NotFound(_))
        ));
        let (pid, exit) = f.tasks.delete("c", None).await.unwrap();
        assert_eq!((pid, exit.code), (100, 137));
        assert!(f.tasks.is_empty());
        assert!(matches!(
            f.tasks.state("c", None),
            Err(TaskError::NotFound(_))
        ));
        assert_eq!(
            f.topics(4).await,
            vec![
                TASK_CREATE_EVENT_TOPIC,
                TASK_START_EVENT_TOPIC,
                TASK_EXIT_EVENT_TOPIC,
                TASK_DELETE_EVENT_TOPIC
            ]
        );
    }

    #[tokio::test]
    async fn the_init_exit_is_reported_after_its_execs_exits() {
        let f = fixture(false);
        f.create().await.unwrap();
        f.tasks.start("c", None).await.unwrap();
        f.tasks
            .exec("c", "e", process_spec(), Stdio::default())
            .unwrap();
        assert!(matches!(
            f.tasks.exec("c", "e", process_spec(), Stdio::default()),
            Err(TaskError::AlreadyExists(_))
        ));
        let pid = f.tasks.start("c", Some("e")).await.unwrap();
        assert_eq!(pid, 200);
        // The init dies first; its exit must wait for the exec's.
        f.init.exit.set(Exit::now(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(f.tasks.state("c", None).unwrap().1.status, Status::Running);
        let exec = f.execs.lock().unwrap()[0].clone();
        exec.exit.set(Exit::now(4));
        assert_eq!(f.tasks.wait("c", Some("e")).await.unwrap().code, 4);
        assert_eq!(f.tasks.wait("c", None).await.unwrap().code, 0);
        assert_eq!(
            f.topics(6).await,
            vec![
                TASK_CREATE_EVENT_TOPIC,
                TASK_START_EVENT_TOPIC,
                TASK_EXEC_ADDED_EVENT_TOPIC,
                TASK_EXEC_STARTED_EVENT_TOPIC,
                TASK_EXIT_EVENT_TOPIC,
                TASK_EXIT_EVENT_TOPIC,
            ]
        );
        let (exec_pid, exec_exit) = f.tasks.delete("c", Some("e")).await.unwrap();
        assert_eq!((exec_pid, exec_exit.code), (200, 4));
        assert!(matches!(
            f.tasks.state("c", Some("e")),
            Err(TaskError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_running_exec_cannot_be_deleted_and_a_stopped_container_takes_no_execs() {
        let f = fixture(false);
        f.create().await.unwrap();
        f.tasks.start("c", None).await.unwrap();
        f.tasks
            .exec("c", "e", process_spec(), Stdio::default())
            .unwrap();
        f.tasks.start("c", Some("e")).await.unwrap();
        assert!(matches!(
            f.tasks.delete("c", Some("e")).await,
            Err(TaskError::FailedPrecondition(_))
        ));
        f.tasks.kill("c", Some("e"), 9, false).await.unwrap();
        assert_eq!(f.tasks.wait("c", Some("e")).await.unwrap().code, 137);
        f.tasks.kill("c", None, 9, true).await.unwrap();
        f.tasks.wait("c", None).await.unwrap();
        assert!(matches!(
            f.tasks.exec("c", "late", process_spec(), Stdio::default()),
            Err(TaskError::FailedPrecondition(_))
        ));
    }

    #[tokio::test]
    async fn a_created_container_can_be_deleted_and_reports_the_kill() {
        let f = fixture(false);
        f.create().await.unwrap();
        let (_, exit) = f.tasks.delete("c", None).await.unwrap();
        assert_eq!(exit.code, 137);
        assert!(BackendSelector::marked(f.bundle.path()).is_none());
    }

    #[tokio::test]
    async fn a_failed_create_leaves_no_task_and_no_marker() {
        let f = fixture(true);
        let e = f.create().await.unwrap_err();
        assert!(e.to_string().contains("executable file not found"), "{e}");
        assert!(f.tasks.is_empty());
        assert!(BackendSelector::marked(f.bundle.path()).is_none());
        assert!(f.topics(1).await.is_empty());
    }

    #[test]
    fn a_bad_spec_field_is_named_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#,
        )
        .unwrap();
        let e = load_spec(&path).unwrap_err().to_string();
        assert!(
            e.contains("linux.namespaces[1].type") && e.contains("bogus"),
            "{e}"
        );
    }

    #[test]
    fn errors_carry_the_grpc_codes_containerd_expects() {
        use containerd_shim::protos::ttrpc::{Code, Error};
        let code = |e: TaskError| match Error::from(e) {
            Error::RpcStatus(status) => status.code(),
            other => panic!("{other:?}"),
        };
        assert_eq!(code(TaskError::Unimplemented("Stats")), Code::UNIMPLEMENTED);
        assert_eq!(code(TaskError::NotFound("x".into())), Code::NOT_FOUND);
        assert_eq!(
            code(TaskError::FailedPrecondition("x".into())),
            Code::FAILED_PRECONDITION
        );
        assert_eq!(
            code(TaskError::AlreadyExists("x".into())),
            Code::ALREADY_EXISTS
        );
    }
}
