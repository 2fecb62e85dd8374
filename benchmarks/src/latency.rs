//! Start latency: the wall time of `ctr run --rm IMAGE ID ...`, one
//! container at a time (to the container's first output and to its exit)
//! and many at once (to their exits).
//!
//! `ctr` is timed from just before it is spawned until a thread blocked in
//! `read` sees its first output and a thread blocked in `wait` sees it
//! exit, so the measurement has no polling granularity.

use std::io::Read;
use std::process::{Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use strata_e2e::Containerd;

use crate::rounds::{self, Failure};
use crate::runtimes::Runtime;

/// How long one `ctr run` may take before the benchmark gives up.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(120);

/// The serial runs' command: it prints one line and exits, as cheaply as
/// `true` does.
const SERIAL_COMMAND: [&str; 2] = ["echo", "up"];

/// What a `ctr run --rm` came to.
struct Finished {
    output: std::io::Result<Output>,
    /// When its first output arrived, if any did.
    first_output: Option<Instant>,
    exited: Instant,
}

/// A `ctr run --rm` that was spawned and not yet waited for.
struct Pending {
    command: String,
    pid: u32,
    done: Receiver<Finished>,
}

/// Spawns `ctr run --rm --runtime RUNTIME IMAGE ID ARGS...` on `c`.
fn spawn_run(c: &Containerd, runtime: &str, id: &str, args: &[&str]) -> Result<Pending> {
    c.track(id);
    let mut cmd = c.ctr_command();
    cmd.args(["run", "--rm", "--fifo-dir"])
        .arg(c.fifo_dir())
        .args(["--runtime", runtime, c.image(), id])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let command = strata_e2e::command::describe(&cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning `{command}`"))?;
    let pid = child.id();
    let (tx, done) = mpsc::channel();
    thread::spawn(move || {
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut first_output = None;
        let mut printed = Vec::new();
        let mut buf = [0; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    first_output.get_or_insert_with(Instant::now);
                    printed.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let output = child.wait_with_output().map(|mut out| {
            out.stdout = printed;
            out
        });
        let _ = tx.send(Finished {
            output,
            first_output,
            exited: Instant::now(),
        });
    });
    Ok(Pending { command, pid, done })
}

impl Pending {
    /// Waits until `ctr` exits (at most until `deadline`) and returns how
    /// it went. Fails if it failed or ran past the deadline, in which case
    /// it is killed.
    fn finish(self, deadline: Instant) -> Result<Finished> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(left) {
            Ok(finished) => {
                let out = finished
                    .output
                    .as_ref()
                    .map_err(|e| anyhow::anyhow!("waiting for `{}`: {e}", self.command))?;
                if !out.status.success() {
                    bail!(
                        "`{}` failed ({}):\n{}{}",
                        self.command,
                        out.status,
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                Ok(finished)
            }
            Err(_) => {
                // SAFETY: kill(2) on the PID of our own child, which the
                // waiting thread has not reaped yet (it has not reported).
                unsafe {
                    libc::kill(self.pid as i32, libc::SIGKILL);
                }
                bail!("`{}` did not finish within {CTR_TIMEOUT:?}", self.command)
            }
        }
    }
}

/// Milliseconds in `d`.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The wall times of one serial run, in ms from the spawn of `ctr`.
pub struct Timing {
    /// To the container's first output.
    pub first_output: f64,
    /// To `ctr`'s exit.
    pub exit: f64,
}

/// Runs one container of `args` to completion and returns its timing; a
/// container that printed nothing has its exit as its first output.
pub fn run_once(c: &Containerd, runtime: &str, id: &str, args: &[&str]) -> Result<Timing> {
    let start = Instant::now();
    let finished = spawn_run(c, runtime, id, args)?.finish(start + CTR_TIMEOUT)?;
    Ok(Timing {
        first_output: ms(finished.first_output.unwrap_or(finished.exited) - start),
        exit: ms(finished.exited - start),
    })
}

/// The serial start latencies of each runtime, in ms: to the first output
/// and to the exit of each timed run.
#[derive(Clone, Default)]
pub struct Serial {
    /// To the container's first output.
    pub first_output: Vec<f64>,
    /// To `ctr`'s exit.
    pub exit: Vec<f64>,
}

/// Serial start latency of each runtime: `warmup` untimed runs each, then
/// `runs` timed runs each of [`SERIAL_COMMAND`], interleaved (first
/// runtime, second, first, …). Returns one [`Serial`] per runtime, in the
/// order given.
pub fn serial(
    c: &Containerd,
    runtimes: &[Runtime],
    warmup: usize,
    runs: usize,
    failures: &mut Vec<Failure>,
) -> Vec<Serial> {
    let mut times = vec![Serial::default(); runtimes.len()];
    rounds::interleaved(runtimes, warmup + runs, "start", failures, |i, rt, r| {
        if r < warmup {
            let id = format!("warm-{}-{r}", rt.label);
            let t = run_once(c, &rt.name, &id, &SERIAL_COMMAND)?;
            eprintln!(
                "[start] warm-up {} {}/{warmup}: {:.1} ms",
                rt.label,
                r + 1,
                t.exit
            );
        } else {
            let n = r - warmup;
            let id = format!("lat-{}-{n}", rt.label);
            let t = run_once(c, &rt.name, &id, &SERIAL_COMMAND)?;
            eprintln!(
                "[start] {} {}/{runs}: first output {:.1} ms, exit {:.1} ms",
                rt.label,
                n + 1,
                t.first_output,
                t.exit
            );
            times[i].first_output.push(t.first_output);
            times[i].exit.push(t.exit);
        }
        Ok(())
    });
    times
}

/// Starts `n` containers at once and returns the time in ms until the last
/// of them has exited.
pub fn burst(c: &Containerd, runtime: &str, prefix: &str, n: usize) -> Result<f64> {
    let start = Instant::now();
    let pending = (0..n)
        .map(|j| spawn_run(c, runtime, &format!("{prefix}-{j}"), &["true"]))
        .collect::<Result<Vec<_>>>()?;
    let deadline = start + CTR_TIMEOUT;
    let mut last = start;
    for p in pending {
        last = last.max(p.finish(deadline)?.exited);
    }
    Ok(ms(last - start))
}

/// Parallel start of each runtime: `rounds` bursts of `n` containers per
/// runtime, interleaved. Returns the times in ms, one list per runtime.
pub fn parallel(
    c: &Containerd,
    runtimes: &[Runtime],
    n: usize,
    rounds: usize,
    failures: &mut Vec<Failure>,
) -> Vec<Vec<f64>> {
    let mut times = vec![Vec::with_capacity(rounds); runtimes.len()];
    rounds::interleaved(runtimes, rounds, "parallel", failures, |i, rt, r| {
        let t = burst(c, &rt.name, &format!("par-{}-{r}", rt.label), n)?;
        eprintln!(
            "[parallel] {} round {}/{rounds}: {n} containers in {t:.1} ms",
            rt.label,
            r + 1
        );
        times[i].push(t);
        Ok(())
    });
    times
}
