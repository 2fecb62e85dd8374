//! The host's end of the agent protocol: calls with replies, and the
//! output and exits the agent pushes, routed to each process's sink.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_agent::protocol::{
    decode, encode, Call, Frame, GuestMessage, HostMessage, Reply, Stream, MAX_CHUNK, MAX_FRAME,
};
use strata_backend::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// How long a call may go unanswered before the guest counts as hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

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

type Replies = HashMap<u64, oneshot::Sender<std::result::Result<Reply, String>>>;

#[derive(Default)]
struct Routes {
    replies: Replies,
    sinks: HashMap<String, Sink>,
    /// Why the connection ended, once it has.
    closed: Option<String>,
}

/// A connection to one VM's agent, shared by the containers it hosts.
pub struct AgentClient {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU64,
    vm: String,
}

impl AgentClient {
    /// Greets the agent on `stream` and waits until it is ready; returns the
    /// client and the guest kernel's release. `vm` names the VM in messages.
    pub async fn connect(stream: UnixStream, vm: &str) -> Result<(AgentClient, String)> {
        let (mut reader, mut writer) = stream.into_split();
        writer
            .write_all(
                &encode(&Frame::Control(HostMessage::Hello))
                    .map_err(|e| Error::io("encoding", e))?,
            )
            .await
            .map_err(|e| Error::io(format!("greeting the agent of {vm}"), e))?;
        let kernel = match read(&mut reader).await {
            Ok(Some(Frame::Control(GuestMessage::Ready { kernel }))) => kernel,
            Ok(Some(other)) => {
                return Err(Error::Process(format!(
                    "the agent of {vm} answered the greeting with {other:?}"
                )))
            }
            Ok(None) => {
                return Err(Error::Process(format!(
                    "the VM {vm} closed its agent port before the agent was ready"
                )))
            }
            Err(e) => return Err(Error::io(format!("reading from the agent of {vm}"), e)),
        };
        let routes = Arc::new(Mutex::new(Routes::default()));
        tokio::spawn(route(reader, routes.clone(), vm.to_owned()));
        Ok((
            AgentClient {
                writer: tokio::sync::Mutex::new(writer),
                routes,
                next_id: AtomicU64::new(1),
                vm: vm.to_owned(),
            },
            kernel,
        ))
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the call and waits for its reply; the agent's refusal becomes
    /// [`Error::Process`] with its message.
    pub async fn call(&self, call: Call) -> Result<Reply> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let what = call_name(&call);
        let (tx, rx) = oneshot::channel();
        {
            let mut routes = self.routes();
            if let Some(reason) = &routes.closed {
                return Err(Error::State(format!("cannot {what}: {reason}")));
            }
            routes.replies.insert(id, tx);
        }
        let sent = self
            .send(&Frame::Control(HostMessage::Request { id, call }))
            .await;
        if let Err(e) = sent {
            self.routes().replies.remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(message))) => Err(Error::Process(message)),
            Ok(Err(_)) => Err(Error::State(format!(
                "cannot {what}: {}",
                self.routes().closed.clone().unwrap_or_default()
            ))),
            Err(_) => {
                self.routes().replies.remove(&id);
                Err(Error::Process(format!(
                    "the agent of {} did not answer {what} in {CALL_TIMEOUT:?}",
                    self.vm
                )))
            }
        }
    }

    /// Sends stdin bytes to the process with key `process`, in frames of at most [`MAX_CHUNK`].
    pub async fn stdin(&self, process: &str, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(MAX_CHUNK) {
            self.send(&Frame::Data {
                process: process.to_owned(),
                stream: Stream::Stdin,
                data: chunk.to_vec(),
            })
            .await?;
        }
        Ok(())
    }

    async fn send(&self, frame: &Frame<HostMessage>) -> Result<()> {
        let bytes = encode(frame).map_err(|e| Error::io("encoding a frame for the agent", e))?;
        self.writer
            .lock()
            .await
            .write_all(&bytes)
            .await
            .map_err(|e| Error::io(format!("writing to the agent of {}", self.vm), e))
    }

    /// Routes the output and exit of the process with key `process` to
    /// `sink` from now on.
    pub fn attach(&self, process: &str, sink: Sink) {
        let mut routes = self.routes();
        if routes.closed.is_some() {
            let _ = sink.exit.send(LOST);
            return;
        }
        routes.sinks.insert(process.to_owned(), sink);
    }

    /// Stops routing to `process` (its start failed).
    pub fn detach(&self, process: &str) {
        self.routes().sinks.remove(process);
    }
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

/// Reads one frame from the agent.
async fn read(reader: &mut OwnedReadHalf) -> std::io::Result<Option<Frame<GuestMessage>>> {
    let mut length = [0; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length == 0 || length > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame length {length} out of range"),
        ));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    decode(&body).map(Some)
}

/// Delivers the agent's frames until the connection ends; then fails every
/// waiting call and ends every process with [`LOST`], so nothing hangs on
/// a VM that is gone.
async fn route(mut reader: OwnedReadHalf, routes: Arc<Mutex<Routes>>, vm: String) {
    let reason = loop {
        let frame = match read(&mut reader).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break format!("the VM {vm} is gone (its agent port closed)"),
            Err(e) => break format!("reading from the agent of {vm}: {e}"),
        };
        let mut routes = routes.lock().unwrap_or_else(|p| p.into_inner());
        match frame {
            Frame::Control(GuestMessage::Reply { id, result }) => {
                if let Some(tx) = routes.replies.remove(&id) {
                    let _ = tx.send(result);
                }
            }
            Frame::Control(GuestMessage::Exit { process, code }) => {
                if let Some(sink) = routes.sinks.remove(&process) {
                    let _ = sink.exit.send(code);
                }
            }
            Frame::Control(GuestMessage::Ready { .. }) => {}
            Frame::Data {
                process,
                stream,
                data,
            } => {
                let Some(sink) = routes.sinks.get(&process) else {
                    continue;
                };
                let to = match stream {
                    Stream::Stdout => &sink.stdout,
                    Stream::Stderr => &sink.stderr,
                    Stream::Stdin => &None,
                };
                if let Some(to) = to {
                    let _ = to.send(data);
                }
            }
        }
    };
    log::info!("{reason}");
    let mut routes = routes.lock().unwrap_or_else(|p| p.into_inner());
    routes.closed = Some(reason);
    routes.replies.clear();
    for (_, sink) in routes.sinks.drain() {
        let _ = sink.exit.send(LOST);
    }
}
