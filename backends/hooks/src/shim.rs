//! Running one hook from the shim, where the global reaper owns every exit.
//!
//! The hook's exit is claimed from `strata_backend::reaper` right after it is
//! started; waiting on the child directly would race with the reaper's
//! `waitpid(-1)`. The pipes are driven by tokio.

use oci_spec::runtime::Hook;
use strata_backend::reaper;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::time::{sleep_until, timeout, Instant};

use crate::hook::{kill_group, prepare, Ended, Ending, Spawned, Tail, DRAIN_GRACE, KILL_GRACE};
use crate::HookFailure;

/// Runs `hook` with `input` on its stdin and returns how it ended.
pub(crate) async fn run_one(hook: &Hook, input: &[u8]) -> Result<Ended, HookFailure> {
    let prepared = prepare(hook)?;
    let spawned = prepared.spawn()?;
    let pid = spawned.pid;
    let mut exit = reaper::watch(pid);
    let (stdin, stdout, stderr) = match pipes(spawned) {
        Ok(pipes) => pipes,
        Err(error) => {
            kill_group(pid);
            let _ = timeout(KILL_GRACE, &mut exit).await;
            return Err(HookFailure::Io {
                what: "setting up the hook's pipes",
                error,
            });
        }
    };

    let mut stdout_tail = Tail::default();
    let mut stderr_tail = Tail::default();
    let mut io = Box::pin(async {
        tokio::join!(
            feed(stdin, input),
            collect(stdout, &mut stdout_tail),
            collect(stderr, &mut stderr_tail),
        )
    });
    let mut io_done = false;
    let deadline = prepared.timeout.map(|limit| Instant::now() + limit);
    let expiry = async {
        match deadline {
            Some(at) => sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);

    let exited = loop {
        tokio::select! {
            _ = &mut io, if !io_done => io_done = true,
            status = &mut exit => break Some(status.unwrap_or(libc::SIGKILL)),
            _ = &mut expiry => break None,
        }
    };
    let ending = match exited {
        Some(status) => Ending::Status(status),
        // The exit may have been collected just as the time ran out.
        None => match exit.try_recv() {
            Ok(status) => Ending::Status(status),
            Err(_) => {
                kill_group(pid);
                if timeout(KILL_GRACE, &mut exit).await.is_err() {
                    log::warn!("hook {pid} was killed for its timeout but has not exited");
                }
                Ending::TimedOut(prepared.timeout.unwrap_or_default())
            }
        },
    };
    if !io_done {
        let _ = timeout(DRAIN_GRACE, &mut io).await;
    }
    drop(io);
    Ok(Ended {
        ending,
        stdout: stdout_tail,
        stderr: stderr_tail,
    })
}

/// Our ends of the hook's three pipes, registered with tokio.
fn pipes(spawned: Spawned) -> std::io::Result<(pipe::Sender, pipe::Receiver, pipe::Receiver)> {
    Ok((
        pipe::Sender::from_owned_fd(spawned.stdin)?,
        pipe::Receiver::from_owned_fd(spawned.stdout)?,
        pipe::Receiver::from_owned_fd(spawned.stderr)?,
    ))
}

/// Writes the state and closes stdin. A hook need not read it: a broken
/// pipe is fine.
async fn feed(mut stdin: pipe::Sender, input: &[u8]) {
    if let Err(e) = stdin.write_all(input).await {
        log::debug!("hook did not take its input: {e}");
    }
}

/// Reads a stream to its end, keeping its tail.
async fn collect(mut stream: pipe::Receiver, tail: &mut Tail) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => tail.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::debug!("reading hook output: {e}");
                return;
            }
        }
    }
}
