//! The host's end of the agent protocol: ttrpc's async client on the VM's
//! agent stream, with the stubs generated from `agent.proto`; each attached
//! process's output is read and its exit waited for, into its sink.

use std::sync::Arc;
use std::time::Duration;

use strata_agent::protocol::agent::{
    ContainerRequest, CreateContainerRequest, Empty, ExecProcessRequest, ProcessRequest,
    ResizePtyRequest, SignalProcessRequest, WriteStdinRequest,
};
use strata_agent::protocol::{Call, Reply, MAX_CHUNK};
use strata_backend::{Error, Result};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// The client stubs generated from `agent.proto`, next to the messages
/// they name as `super::agent`.
mod stubs {
    pub use strata_agent::protocol::agent;
    include!(concat!(env!("OUT_DIR"), "/stubs.rs"));
}

use stubs::agent_ttrpc::AgentClient as Stub;

/// How long a call may go unanswered before the guest counts as hung
/// (reading output and waiting for an exit are not bounded). Generous:
/// a guest under software emulation on a host busy with many of them
/// answers slowly without being hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The exit code reported for processes whose VM went away under them.
pub const LOST: u32 = 137;

/// Where a process's output and exit go.
pub struct Sink {
    /// Receives standard output (or the terminal's output).
    pub stdout: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// Receives standard error.
    pub stderr: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// Receives the exit code, after the output.
    pub exit: oneshot::Sender<u32>,
}

/// A connection to one VM's agent, shared by the containers it hosts.
pub struct AgentClient {
    stub: Arc<Stub>,
    vm: String,
}

impl AgentClient {
    /// Greets the agent on `stream` and waits for its answer; returns the
    /// client and the guest kernel's release. `vm` names the VM in messages.
    pub async fn connect(stream: UnixStream, vm: &str) -> Result<(AgentClient, String)> {
        let socket = ttrpc::r#async::transport::Socket::new(stream);
        let client = AgentClient {
            stub: Arc::new(Stub::new(ttrpc::r#async::Client::new(socket))),
            vm: vm.to_owned(),
        };
        let hello = client
            .stub
            .hello(ttrpc::context::Context::default(), &Empty::new())
            .await
            .map_err(|e| client.failed("greet the agent", e))?;
        Ok((client, hello.kernel_release))
    }

    /// Makes the call and waits for its answer; the agent's refusal becomes
    /// [`Error::Process`] with its message.
    pub async fn call(&self, call: Call) -> Result<Reply> {
        let what = call_name(&call);
        self.send(call).await.map_err(|e| self.failed(what, e))
    }

    async fn send(&self, call: Call) -> ttrpc::Result<Reply> {
        let ctx = || ttrpc::context::with_duration(CALL_TIMEOUT);
        let stub = &self.stub;
        let done = |_: Empty| Reply::Done;
        match call {
            Call::Create {
                container,
                disk,
                spec,
                mounts,
                stdin,
            } => {
                let request = CreateContainerRequest {
                    container_id: container,
                    disk,
                    spec_json: to_json(&spec)?,
                    mounts,
                    stdin,
                    ..Default::default()
                };
                stub.create_container(ctx(), &request).await.map(done)
            }
            Call::Start { container } => stub
                .start_container(ctx(), &container_request(container))
                .await
                .map(|s| Reply::Started { pid: s.pid }),
            Call::Exec {
                container,
                exec_id,
                process,
                stdin,
            } => {
                let request = ExecProcessRequest {
                    container_id: container,
                    exec_id,
                    process_json: to_json(&process)?,
                    stdin,
                    ..Default::default()
                };
                stub.exec_process(ctx(), &request)
                    .await
                    .map(|s| Reply::Started { pid: s.pid })
            }
            Call::Kill {
                container,
                process,
                signal,
                all,
            } => {
                let request = SignalProcessRequest {
                    container_id: container,
                    exec_id: process,
                    signal,
                    all,
                    ..Default::default()
                };
                stub.signal_process(ctx(), &request).await.map(done)
            }
            Call::CloseStdin { container, process } => stub
                .close_stdin(ctx(), &process_request(&container, &process))
                .await
                .map(done),
            Call::ResizePty {
                container,
                process,
                width,
                height,
            } => {
                let request = ResizePtyRequest {
                    container_id: container,
                    exec_id: process,
                    width,
                    height,
                    ..Default::default()
                };
                stub.resize_pty(ctx(), &request).await.map(done)
            }
            Call::Stats { container } => {
                let stats = stub
                    .stats_container(ctx(), &container_request(container))
                    .await?;
                let stats = serde_json::from_slice(&stats.stats_json).map_err(|e| {
                    ttrpc::Error::Others(format!("decoding the agent's statistics: {e}"))
                })?;
                Ok(Reply::Stats(Box::new(stats)))
            }
            Call::Remove { container } => stub
                .remove_container(ctx(), &container_request(container))
                .await
                .map(done),
            Call::Shutdown => stub.shutdown(ctx(), &Empty::new()).await.map(done),
        }
    }

    /// The error of a call to `what` that failed with `e`.
    fn failed(&self, what: &str, e: ttrpc::Error) -> Error {
        match e {
            ttrpc::Error::RpcStatus(status) => Error::Process(status.message),
            ttrpc::Error::LocalClosed | ttrpc::Error::RemoteClosed | ttrpc::Error::Socket(_) => {
                Error::State(format!(
                    "cannot {what}: the VM {} is gone (its agent connection ended: {e})",
                    self.vm
                ))
            }
            e => Error::Process(format!(
                "the agent of {} did not answer {what}: {e}",
                self.vm
            )),
        }
    }

    /// Sends stdin bytes to process `exec` of `container`, in calls of at
    /// most [`MAX_CHUNK`] bytes.
    pub async fn stdin(&self, container: &str, exec: &str, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(MAX_CHUNK) {
            let request = WriteStdinRequest {
                container_id: container.to_owned(),
                exec_id: exec.to_owned(),
                data: chunk.to_vec(),
                ..Default::default()
            };
            self.stub
                .write_stdin(ttrpc::context::with_duration(CALL_TIMEOUT), &request)
                .await
                .map_err(|e| self.failed("write to stdin", e))?;
        }
        Ok(())
    }

    /// Reads the output of process `exec` of `container` (created or
    /// started by now) into `sink` and then its exit, once the output was
    /// read to its end; a failure (the VM is gone) ends it with [`LOST`].
    pub fn attach(&self, container: &str, exec: &str, sink: Sink) {
        let request = process_request(container, exec);
        let (stub, vm) = (self.stub.clone(), self.vm.clone());
        tokio::spawn(async move {
            let stdout = read(&stub, &request, Stream::Stdout, sink.stdout);
            let stderr = read(&stub, &request, Stream::Stderr, sink.stderr);
            let wait = stub.wait_process(ttrpc::context::Context::default(), &request);
            let (_, _, exit) = tokio::join!(stdout, stderr, wait);
            let code = match exit {
                Ok(exit) => exit.code,
                Err(e) => {
                    log::info!(
                        "vm {vm}: process {:?} of {:?} lost: {e}",
                        request.exec_id,
                        request.container_id
                    );
                    LOST
                }
            };
            let _ = sink.exit.send(code);
        });
    }
}

/// One output stream of a process.
#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Reads `stream` of the process of `request` until its end, passing each
/// chunk to `to` (or dropping it: the guest holds output until it is read).
async fn read(
    stub: &Stub,
    request: &ProcessRequest,
    stream: Stream,
    to: Option<mpsc::UnboundedSender<Vec<u8>>>,
) {
    loop {
        let ctx = ttrpc::context::Context::default();
        let output = match stream {
            Stream::Stdout => stub.read_stdout(ctx, request).await,
            Stream::Stderr => stub.read_stderr(ctx, request).await,
        };
        match output {
            Ok(output) if output.eof => return,
            Ok(output) => {
                if let Some(to) = &to {
                    let _ = to.send(output.data);
                }
            }
            Err(e) => {
                log::debug!(
                    "reading the output of {:?} of {:?}: {e}",
                    request.exec_id,
                    request.container_id
                );
                return;
            }
        }
    }
}

fn container_request(container: String) -> ContainerRequest {
    ContainerRequest {
        container_id: container,
        ..Default::default()
    }
}

fn process_request(container: &str, exec: &str) -> ProcessRequest {
    ProcessRequest {
        container_id: container.to_owned(),
        exec_id: exec.to_owned(),
        ..Default::default()
    }
}

fn to_json(value: &impl serde::Serialize) -> ttrpc::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| ttrpc::Error::Others(format!("encoding JSON: {e}")))
}

fn call_name(call: &Call) -> &'static str {
    match call {
        Call::Create { .. } => "create the container",
        Call::Start { .. } => "start the container",
        Call::Exec { .. } => "exec a process",
        Call::Kill { .. } => "send a signal",
        Call::CloseStdin { .. } => "close stdin",
        Call::ResizePty { .. } => "resize the terminal",
        Call::Stats { .. } => "read statistics",
        Call::Remove { .. } => "remove the container from the VM",
        Call::Shutdown => "shut the VM down",
    }
}
