//! The seam between the shim and the isolation backends.
//!
//! The shim speaks containerd's task API; a backend speaks only these types.
//! Each backend (native, interpose, microvm) implements [`Backend`], which
//! creates a [`Container`], whose processes are [`Process`]es. Nothing here
//! knows about protobuf or ttrpc, so backends can be driven by the shim, by the
//! command-line runtime, and by tests alike.

pub mod child;
mod error;
mod exit;
pub mod reaper;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

pub use error::{Error, Result};
pub use exit::{Exit, ExitCell};

/// Everything a backend needs to create one container.
#[derive(Debug)]
pub struct CreateRequest {
    /// The container id containerd gave the task.
    pub id: String,
    /// The OCI bundle directory; `rootfs` inside it is already mounted.
    pub bundle: PathBuf,
    /// A private directory for the backend's own files (FIFOs, sockets, disk
    /// images); it exists and lives until the container is deleted.
    pub state_dir: PathBuf,
    /// The bundle's `config.json`, parsed.
    pub spec: oci_spec::runtime::Spec,
    /// Where the init process's standard streams go.
    pub stdio: Stdio,
}

impl CreateRequest {
    /// The absolute host path of the spec's root filesystem (`root.path`,
    /// relative to the bundle unless absolute).
    pub fn rootfs(&self) -> Result<PathBuf> {
        rootfs_path(&self.bundle, &self.spec)
    }
}

/// The absolute host path of `spec`'s root filesystem, for the bundle at
/// `bundle`.
pub fn rootfs_path(bundle: &Path, spec: &oci_spec::runtime::Spec) -> Result<PathBuf> {
    let root = spec.root().as_ref().ok_or_else(|| Error::InvalidSpec {
        field: "root".into(),
        reason: "missing".into(),
    })?;
    let path = root.path();
    Ok(if path.is_absolute() {
        path.clone()
    } else {
        bundle.join(path)
    })
}

/// Paths of the FIFOs (or files) containerd opened for a process's stdio.
///
/// `None` means the stream is not connected (`/dev/null` for the process).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    /// Read by the process as its standard input.
    pub stdin: Option<PathBuf>,
    /// Receives the process's standard output.
    pub stdout: Option<PathBuf>,
    /// Receives the process's standard error.
    pub stderr: Option<PathBuf>,
    /// Whether the process wants a terminal instead of separate streams.
    pub terminal: bool,
}

impl Stdio {
    /// Builds stdio from containerd's strings, where an empty string means "not connected".
    pub fn from_paths(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Self {
        let path = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        Stdio {
            stdin: path(stdin),
            stdout: path(stdout),
            stderr: path(stderr),
            terminal,
        }
    }
}

/// One process of a container, the init process or an exec'd one.
#[async_trait]
pub trait Process: Send + Sync {
    /// The process id as the shim's host sees it (the VM's agent id for microVMs).
    fn pid(&self) -> u32;
    /// Sends `signal` to the process.
    async fn kill(&self, signal: u32) -> Result<()>;
    /// Resolves once the process has exited and its output has been delivered.
    async fn wait(&self) -> Exit;
    /// Returns the exit if the process has already exited.
    fn try_exit(&self) -> Option<Exit>;
    /// Closes the process's standard input, so it reads end-of-file.
    async fn close_stdin(&self);
    /// Resizes the process's terminal; an error if it has none.
    async fn resize_pty(&self, width: u32, height: u32) -> Result<()>;
}

/// A container created by a backend, from `Create` until `Delete`.
#[async_trait]
pub trait Container: Send + Sync {
    /// The container's init process.
    fn init(&self) -> &dyn Process;
    /// Releases the init process so the user's program starts running.
    async fn start(&self) -> Result<()>;
    /// Starts a new process inside the container, described by an OCI process spec.
    async fn exec(
        &self,
        exec_id: &str,
        process: oci_spec::runtime::Process,
        stdio: Stdio,
    ) -> Result<Box<dyn Process>>;
    /// Sends `signal` to every process of the container.
    async fn kill_all(&self, signal: u32) -> Result<()>;
    /// The host pids of all the container's processes.
    async fn pids(&self) -> Result<Vec<u32>>;
    /// Freezes every process of the container.
    async fn pause(&self) -> Result<()>;
    /// Thaws a paused container.
    async fn resume(&self) -> Result<()>;
    /// Changes the container's resource limits while it runs.
    async fn update(&self, resources: oci_spec::runtime::LinuxResources) -> Result<()>;
    /// The container's resource usage.
    async fn stats(&self) -> Result<Metrics>;
    /// Waits until processes of the container are killed for lack of memory;
    /// returns how many were. An error means no more OOM events will come.
    async fn oom(&self) -> Result<u64>;
    /// Tears the container down: ends what still runs and removes what the
    /// backend created for it. Safe to call more than once.
    async fn destroy(&self) -> Result<()>;
}

/// A container's resource usage, in the cgroup terms containerd reports it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// The cgroup version the numbers come from (which message containerd gets).
    pub version: strata_cgroups::Version,
    /// The numbers.
    pub stats: strata_cgroups::Stats,
}

/// An isolation backend: creates containers, and cleans up after a shim that died.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Creates a container whose init process waits for [`Container::start`].
    async fn create(&self, request: CreateRequest) -> Result<Box<dyn Container>>;
    /// Removes everything a container of this backend may have left behind when
    /// its shim was killed: processes, cgroups, and other host state.
    /// `bundle` and `state_dir` are those the container was created with.
    async fn cleanup(&self, id: &str, bundle: &Path, state_dir: &Path) -> Result<()>;
}
