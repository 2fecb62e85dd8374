//! Connects a guest process's streams to containerd's FIFOs: output the
//! agent sends is written to the FIFOs; what containerd writes to the stdin
//! FIFO is sent to the agent, and its end (or CloseIO) closes the process's
//! stdin in the guest.

use std::path::Path;
use std::sync::Arc;

use strata_agent::protocol::{process_key, Call};
use strata_backend::{Error, Result, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::client::{AgentClient, Sink};

/// The output half: the sink the client routes to, and the tasks that
/// write to the FIFOs (done once everything routed has been written).
pub struct Outputs {
    /// What the client routes the process's output and exit to.
    pub sink: Sink,
    /// Finish after the last byte was written to the FIFOs.
    pub writers: Vec<JoinHandle<()>>,
    /// Receives the exit code, after the output.
    pub exit: oneshot::Receiver<u32>,
}

/// Opens the output FIFOs of `stdio` and starts their writers.
pub fn outputs(stdio: &Stdio) -> Result<Outputs> {
    let mut writers = Vec::new();
    let stdout = writer(stdio.stdout.as_deref(), &mut writers)?;
    // A terminal merges both streams into its one output.
    let stderr = if stdio.terminal {
        None
    } else {
        writer(stdio.stderr.as_deref(), &mut writers)?
    };
    let (exit_tx, exit) = oneshot::channel();
    Ok(Outputs {
        sink: Sink {
            stdout,
            stderr,
            exit: exit_tx,
        },
        writers,
        exit,
    })
}

fn writer(
    path: Option<&Path>,
    writers: &mut Vec<JoinHandle<()>>,
) -> Result<Option<mpsc::UnboundedSender<Vec<u8>>>> {
    let Some(path) = path else {
        return Ok(None);
    };
    // Read-write keeps the open from failing or blocking when nobody reads yet.
    let mut fifo = pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(path)
        .map_err(|e| Error::path("opening the output FIFO", path, e))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    writers.push(tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if let Err(e) = fifo.write_all(&data).await {
                log::debug!("writing output: {e}");
                return;
            }
        }
    }));
    Ok(Some(tx))
}

/// Copies the stdin FIFO of `stdio` to process `exec` of `container` in
/// the guest until it ends or `close` is notified, then closes the
/// process's stdin. Without a stdin FIFO, nothing is started.
pub fn input(
    stdio: &Stdio,
    container: &str,
    exec: &str,
    client: &Arc<AgentClient>,
    close: Arc<Notify>,
) -> Result<Option<JoinHandle<()>>> {
    let Some(path) = &stdio.stdin else {
        return Ok(None);
    };
    let mut fifo = pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(|e| Error::path("opening the stdin FIFO", path, e))?;
    let (client, key) = (client.clone(), process_key(container, exec));
    let (container, exec) = (container.to_owned(), exec.to_owned());
    Ok(Some(tokio::spawn(async move {
        let mut buf = vec![0; 16 << 10];
        loop {
            let n = tokio::select! {
                read = fifo.read(&mut buf) => match read {
                    Ok(n) => n,
                    Err(e) => {
                        log::debug!("reading stdin of {key:?}: {e}");
                        0
                    }
                },
                _ = close.notified() => 0,
            };
            if n == 0 {
                break;
            }
            if client.stdin(&container, &exec, &buf[..n]).await.is_err() {
                return;
            }
        }
        if let Err(e) = client
            .call(Call::CloseStdin {
                container,
                process: exec,
            })
            .await
        {
            log::debug!("closing stdin of {key:?}: {e}");
        }
    })))
}
