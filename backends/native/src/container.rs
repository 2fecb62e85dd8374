//! A native container, from Create to Delete.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::Signal;
use oci_spec::runtime::{ContainerState, LinuxNamespaceType, Spec};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use oci_spec::runtime::LinuxResources;
use strata_backend::{Container, Error, Metrics, Process, Result, Stdio};
use strata_cgroups::{Cgroup, OomWatcher};
use strata_hooks::HookKind;
use tokio::io::unix::AsyncFd;

use crate::process::NativeProcess;
use crate::protocol::{ExecRequest, Request};
use crate::spawn::{launch, Support};

/// A container whose processes live in namespaces and a cgroup of their own.
pub(crate) struct NativeContainer {
    pub(crate) init: NativeProcess,
    pub(crate) spec: Spec,
    /// What exec'd processes get from the runtime side (no hooks, no id maps).
    pub(crate) support: Support,
    pub(crate) cgroup: Arc<Cgroup>,
    pub(crate) start_fifo: PathBuf,
    pub(crate) helper: PathBuf,
    /// Made at the first [`Container::oom`] call.
    pub(crate) oom: tokio::sync::Mutex<Option<AsyncFd<Watcher>>>,
}

/// An OOM watcher that tokio can poll.
pub(crate) struct Watcher(OomWatcher);

impl AsRawFd for Watcher {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

#[async_trait]
impl Container for NativeContainer {
    fn init(&self) -> &dyn Process {
        &self.init
    }

    async fn start(&self) -> Result<()> {
        let fifo = self.start_fifo.clone();
        let pid = self.init.pid() as i32;
        let spec = self.spec.clone();
        tokio::task::spawn_blocking(move || start_and_wait(&fifo, pid, &spec))
            .await
            .map_err(|e| Error::Process(format!("start task failed: {e}")))??;
        self.run_hooks(HookKind::Poststart, ContainerState::Running)
            .await
    }

    async fn exec(
        &self,
        exec_id: &str,
        process: oci_spec::runtime::Process,
        stdio: Stdio,
    ) -> Result<Box<dyn Process>> {
        if self.init.try_exit().is_some() {
            return Err(Error::State(format!(
                "cannot exec {exec_id}: the container is not running"
            )));
        }
        crate::validate::check_process(&process)?;
        let init_pid = self.init.pid();
        let namespaces = init_namespaces(&self.spec, init_pid);
        let request = Request::Exec(Box::new(ExecRequest {
            process,
            namespaces,
            seccomp: self.support.seccomp.clone(),
            interposer: self.support.interposer_filter(),
        }));
        let process = launch(
            &self.helper,
            request,
            &stdio,
            self.cgroup.clone(),
            self.support.clone(),
        )
        .await?;
        Ok(Box::new(process))
    }

    async fn kill_all(&self, signal: u32) -> Result<()> {
        let signal = Signal::try_from(signal as i32).map_err(|_| Error::InvalidSpec {
            field: "signal".into(),
            reason: format!("{signal} is not a signal"),
        })?;
        self.blocking("signalling", move |cgroup| cgroup.signal_all(signal))
            .await
    }

    async fn pids(&self) -> Result<Vec<u32>> {
        let cgroup = self.cgroup.clone();
        let pids = tokio::task::spawn_blocking(move || cgroup.procs())
            .await
            .map_err(|e| Error::Process(format!("listing pids failed: {e}")))?
            .map_err(|e| Error::Process(format!("listing the container's processes: {e}")))?;
        Ok(pids.into_iter().map(|p| p as u32).collect())
    }

    async fn pause(&self) -> Result<()> {
        self.blocking("pausing", |cgroup| cgroup.freeze()).await
    }

    async fn resume(&self) -> Result<()> {
        self.blocking("resuming", |cgroup| cgroup.thaw()).await
    }

    async fn update(&self, resources: LinuxResources) -> Result<()> {
        crate::validate::check_resources(&resources)?;
        self.blocking("updating the resources of", move |cgroup| {
            cgroup.apply(&resources)
        })
        .await
    }

    async fn stats(&self) -> Result<Metrics> {
        let stats = self
            .blocking("reading the statistics of", |cgroup| cgroup.stats())
            .await?;
        Ok(Metrics {
            version: self.cgroup.version(),
            stats,
        })
    }

    async fn oom(&self) -> Result<u64> {
        let mut slot = self.oom.lock().await;
        if slot.is_none() {
            let watcher = self
                .cgroup
                .oom_watcher()
                .map_err(|e| Error::Process(format!("watching for OOM kills: {e}")))?;
            // SAFETY: the watcher owns its descriptor and keeps it open, unreplaced,
            // for as long as the AsyncFd that owns the watcher lives.
            let registered = unsafe { AsyncFd::register(Watcher(watcher)) };
            *slot = Some(
                registered.map_err(|e| Error::io("polling the OOM watcher", e.into_parts().1))?,
            );
        }
        let Some(fd) = slot.as_mut() else {
            unreachable!("the watcher was just made");
        };
        loop {
            let mut ready = fd
                .readable_mut()
                .await
                .map_err(|e| Error::io("waiting for OOM kills", e))?;
            let kills = ready
                .get_inner_mut()
                .0
                .drain()
                .map_err(|e| Error::Process(format!("reading OOM kills: {e}")))?;
            ready.clear_ready();
            if kills > 0 {
                return Ok(kills);
            }
        }
    }

    async fn destroy(&self) -> Result<()> {
        let cgroup = self.cgroup.clone();
        let fifo = self.start_fifo.clone();
        tokio::task::spawn_blocking(move || teardown(&cgroup, &fifo))
            .await
            .map_err(|e| Error::Process(format!("teardown task failed: {e}")))??;
        self.run_hooks(HookKind::Poststop, ContainerState::Stopped)
            .await
    }
}

impl NativeContainer {
    /// Runs a cgroup operation on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        operation: impl FnOnce(&Cgroup) -> strata_cgroups::Result<T> + Send + 'static,
    ) -> Result<T> {
        let cgroup = self.cgroup.clone();
        tokio::task::spawn_blocking(move || operation(&cgroup))
            .await
            .map_err(|e| Error::Process(format!("{what} the container failed: {e}")))?
            .map_err(|e| Error::Process(format!("{what} the container: {e}")))
    }

    /// Runs the spec's hooks of `kind` from the runtime's namespaces.
    async fn run_hooks(&self, kind: HookKind, status: ContainerState) -> Result<()> {
        let Some(hooks) = self.spec.hooks() else {
            return Ok(());
        };
        let state = self.support.state(self.init.pid() as i32, status);
        strata_hooks::run(kind, hooks, &state)
            .await
            .map_err(|e| Error::Process(e.to_string()))
    }
}

/// Kills whatever still runs in the cgroup, removes it and the start FIFO.
pub(crate) fn teardown(cgroup: &Cgroup, start_fifo: &Path) -> Result<()> {
    cgroup
        .kill_all()
        .map_err(|e| Error::Process(format!("killing the container's processes: {e}")))?;
    cgroup
        .destroy()
        .map_err(|e| Error::Process(format!("removing the container's cgroup: {e}")))?;
    match std::fs::remove_file(start_fifo) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::path("removing", start_fifo, e)),
    }
}

/// Lets the waiting init process exec the user's program.
pub(crate) fn release(fifo: &Path) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(fifo)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENXIO) | Some(libc::ENOENT) => {
                Error::State("cannot start the container: its init process is not waiting".into())
            }
            _ => Error::path("opening the start FIFO", fifo, e),
        })?;
    file.write_all(&[0])
        .map_err(|e| Error::path("writing to the start FIFO", fifo, e))?;
    drop(file);
    let _ = std::fs::remove_file(fifo);
    Ok(())
}

/// Releases the init process and waits until it has run its
/// `startContainer` hooks and exec'd the user's program, which is when
/// Start is done and `poststart` hooks may run. The wait is bounded by the
/// hooks' timeouts.
pub(crate) fn start_and_wait(fifo: &Path, pid: i32, spec: &Spec) -> Result<()> {
    release(fifo)?;
    let hooks: i64 = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
        .map(|list| list.iter().map(|h| h.timeout().unwrap_or(30)).sum())
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(hooks.max(0) as u64 + 10);
    let ours =
        std::fs::metadata("/proc/self/exe").map_err(|e| Error::io("reading /proc/self/exe", e))?;
    let mut pause = Duration::from_micros(200);
    loop {
        match std::fs::metadata(format!("/proc/{pid}/exe")) {
            // Still the runtime's own binary: the helper has not exec'd yet.
            Ok(exe) if exe.dev() == ours.dev() && exe.ino() == ours.ino() => {}
            // A new program, or no process (it exited, or failed before exec).
            _ => return Ok(()),
        }
        if Instant::now() >= deadline {
            return Err(Error::Process(format!(
                "the container's init process {pid} did not exec its program in time"
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// The namespaces of the container's init, to be joined by exec'd processes.
pub(crate) fn init_namespaces(spec: &Spec, init_pid: u32) -> Vec<(LinuxNamespaceType, PathBuf)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|ns| {
            let path = PathBuf::from(format!("/proc/{init_pid}/ns/{}", ns_file(ns.typ())));
            (ns.typ(), path)
        })
        .collect()
}

/// The file name of a namespace under `/proc/<pid>/ns`.
pub(crate) fn ns_file(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}
