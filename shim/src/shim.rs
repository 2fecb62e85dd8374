//! The shim binary's lifecycle as containerd drives it: `start` launches the
//! long-running server, the server serves the task API, and `delete` cleans
//! up after a server that died.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
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
        let address = socket_address(&opts.address, &opts.namespace, &opts.id);
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
        std::fs::write("address", &address)
            .map_err(|e| Error::Other(format!("writing the address file: {e}")))?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let selector = BackendSelector::new(binary_class(), PathBuf::from(SELF_EXE));
        if let Err(e) = Tasks::cleanup(&selector, &self.id, &self.bundle).await {
            log::error!("cleaning up container {}: {e}", self.id);
        }
        // The dead server could not remove its socket.
        remove_socket(&socket_address(
            &self.containerd_address,
            &self.namespace,
            &self.id,
        ));
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
