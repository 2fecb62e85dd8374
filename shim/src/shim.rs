//! The shim binary's lifecycle as containerd drives it: `start` launches the
//! long-running server, the server serves the task API, and `delete` cleans
//! up after a server that died.
//!
//! The containers of one Kubernetes pod share one server: containerd's CRI
//! names a container's pod in the annotation [`SANDBOX_ID_ANNOTATION`] of its
//! `config.json`, and the server's socket address derives from that pod
//! sandbox's id, so `start` for a later container of the pod returns the
//! address of the server that already runs the pod.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{socket_address, Config, Error, ExitSignal, Flags, Shim, StartOpts};

use crate::class::{binary_class, BackendSelector, BINARY_CLASS_ENV};
use crate::events::{ContainerdForwarder, EventSender};
use crate::service::TaskService;
use crate::tasks::Tasks;

/// The binary that runs the native backend's init helper: this one.
const SELF_EXE: &str = "/proc/self/exe";

/// The annotation in which containerd's CRI names the pod sandbox a
/// container belongs to (the sandbox's own id for the sandbox container).
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// The id whose server runs the container in `bundle`: its pod sandbox's,
/// or its own `id` outside a pod.
fn server_group(bundle: &Path, id: &str) -> Result<String, Error> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path)
        .map_err(|e| Error::Other(format!("reading {}: {e}", path.display())))?;
    let spec: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| Error::Other(format!("parsing {}: {e}", path.display())))?;
    let sandbox = spec
        .get("annotations")
        .and_then(|a| a.get(SANDBOX_ID_ANNOTATION))
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty());
    Ok(sandbox.unwrap_or(id).to_owned())
}

/// Whether a server listens on `address` (`unix://PATH`).
fn answers(address: &str) -> bool {
    UnixStream::connect(address.strip_prefix("unix://").unwrap_or(address)).is_ok()
}

/// One shim instance, as containerd starts it.
pub struct StrataShim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
    bundle: PathBuf,
    /// containerd's own address, from which the shim's socket name derives.
    containerd_address: String,
    /// The socket this server listens on (empty outside the server).
    socket: String,
}

#[async_trait]
impl Shim for StrataShim {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        StrataShim {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle,
            containerd_address: args.address.clone(),
            socket: args.socket.clone(),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // containerd writes the runtime options to stdin; Create carries them
        // again, so they only need to be drained here.
        let mut options = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut options);
        let group = server_group(&self.bundle, &opts.id)?;
        let address = socket_address(&opts.address, &opts.namespace, &group);
        if group != opts.id && answers(&address) {
            log::info!("container {} joins the server of pod {group}", opts.id);
            write_address(&address)?;
            return Ok(address);
        }
        let mut command = Command::new(SELF_EXE);
        if let Some(name) = std::env::args_os().next() {
            // Keep the name containerd used, so the server is recognisable in ps.
            command.arg0(name);
        }
        command
            .args([
                "-namespace",
                &opts.namespace,
                "-id",
                &opts.id,
                "-address",
                &opts.address,
            ])
            .args(["-socket", &address])
            .env(BINARY_CLASS_ENV, binary_class().unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        if opts.debug {
            command.arg("-debug");
        }
        let mut child = command
            .spawn()
            .map_err(|e| Error::Other(format!("starting the shim server: {e}")))?;
        // The server closes its stdout once it listens: wait for that.
        if let Some(mut ready) = child.stdout.take() {
            let mut sink = Vec::new();
            let _ = ready.read_to_end(&mut sink);
        }
        if let Err(e) = containerd_shim::cgroup::adjust_oom_score(child.id()) {
            log::warn!("raising the shim server's oom score: {e}");
        }
        write_address(&address)?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let selector = BackendSelector::new(binary_class(), PathBuf::from(SELF_EXE));
        if let Err(e) = Tasks::cleanup(&selector, &self.id, &self.bundle).await {
            log::error!("cleaning up container {}: {e}", self.id);
        }
        // A dead server could not remove its socket; a live one still
        // serves other containers of the pod and removes it itself.
        let group = server_group(&self.bundle, &self.id).unwrap_or_else(|e| {
            log::warn!("container {}: {e}; taking its own server", self.id);
            self.id.clone()
        });
        let address = socket_address(&self.containerd_address, &self.namespace, &group);
        if !answers(&address) {
            remove_socket(&address);
        }
        let exit = strata_backend::Exit::now(128 + libc::SIGKILL as u32);
        Ok(DeleteResponse {
            exit_status: exit.code,
            exited_at: Some(crate::events::timestamp(exit)).into(),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        // Removed here rather than by the library, which looks the socket up
        // in the bundle that containerd may already have deleted.
        remove_socket(&self.socket);
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        if let Err(e) = strata_backend::reaper::start() {
            log::error!("starting the child reaper: {e}");
        }
        let events =
            EventSender::start(ContainerdForwarder::new(publisher, self.namespace.clone()));
        let selector = BackendSelector::new(binary_class(), PathBuf::from(SELF_EXE));
        let tasks = Arc::new(Tasks::new(events, Box::new(selector)));
        TaskService::new(tasks, self.exit.clone())
    }
}

/// Records the server's address in the bundle, where containerd reads it
/// when it reconnects after a restart.
fn write_address(address: &str) -> Result<(), Error> {
    std::fs::write("address", address)
        .map_err(|e| Error::Other(format!("writing the address file {address}: {e}")))
}

/// Removes a shim socket given as `unix://PATH`; a missing one is fine.
fn remove_socket(address: &str) {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    if path.is_empty() {
        return;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("removing the shim socket {path}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    #[test]
    fn a_pod_container_is_served_by_its_sandbox_s_server() {
        let b = bundle(r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#);
        assert_eq!(server_group(b.path(), "app").unwrap(), "pod1");
        let b = bundle(r#"{"annotations":{"other":"x"}}"#);
        assert_eq!(server_group(b.path(), "solo").unwrap(), "solo");
        let b = bundle(r#"{"ociVersion":"1.0.2"}"#);
        assert_eq!(server_group(b.path(), "solo").unwrap(), "solo");
    }

    #[test]
    fn an_unreadable_config_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = server_group(dir.path(), "c").unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
        let b = bundle("{not json");
        let e = server_group(b.path(), "c").unwrap_err().to_string();
        assert!(e.contains("parsing") && e.contains("config.json"), "{e}");
    }

    #[test]
    fn only_a_listening_socket_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let address = format!("unix://{}", path.display());
        assert!(!answers(&address));
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(answers(&address));
        drop(listener);
        assert!(!answers(&address), "a stale socket file must not answer");
    }
}
