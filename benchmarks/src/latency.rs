//! Start latency: the wall time of `ctr run --rm IMAGE ID true`, one
//! container at a time and many at once.
//!
//! `ctr` is timed from just before it is spawned until a thread blocked in
//! `wait` sees it exit, so the measurement has no polling granularity.

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

/// A `ctr run --rm` that was spawned and not yet waited for.
struct Pending {
    command: String,
    pid: u32,
    done: Receiver<(std::io::Result<Output>, Instant)>,
}

/// Spawns `ctr run --rm --runtime RUNTIME IMAGE ID true` on `c`.
fn spawn_run(c: &Containerd, runtime: &str, id: &str) -> Result<Pending> {
    c.track(id);
    let mut cmd = c.ctr_command();
    cmd.args(["run", "--rm", "--fifo-dir"])
        .arg(c.fifo_dir())
        .args(["--runtime", runtime, c.image(), id, "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let command = strata_e2e::command::describe(&cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("spawning `{command}`"))?;
    let pid = child.id();
    let (tx, done) = mpsc::channel();
    thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = tx.send((out, Instant::now()));
    });
    Ok(Pending { command, pid, done })
}

impl Pending {
    /// Waits until `ctr` exits (at most until `deadline`) and returns the
    /// instant it exited. Fails if it failed or ran past the deadline, in
    /// which case it is killed.
    fn finish(self, deadline: Instant) -> Result<Instant> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(left) {
            Ok((out, exited)) => {
                let out = out.with_context(|| format!("waiting for `{}`", self.command))?;
                if !out.status.success() {
                    bail!(
                        "`{}` failed ({}):\n{}{}",
                        self.command,
                        out.status,
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                Ok(exited)
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

/// Runs one container to completion and returns its wall time in ms.
pub fn run_once(c: &Containerd, runtime: &str, id: &str) -> Result<f64> {
    let start = Instant::now();
    let exited = spawn_run(c, runtime, id)?.finish(start + CTR_TIMEOUT)?;
    Ok(ms(exited - start))
}

/// Serial start latency of each runtime: `warmup` untimed runs each, then
/// `runs` timed runs each, interleaved (first runtime, second, first, …).
/// Returns the times in ms, one list per runtime, in the order given.
pub fn serial(
    c: &Containerd,
    runtimes: &[Runtime],
    warmup: usize,
    runs: usize,
    failures: &mut Vec<Failure>,
) -> Vec<Vec<f64>> {
    let mut times = vec![Vec::with_capacity(runs); runtimes.len()];
    rounds::interleaved(runtimes, warmup + runs, "start", failures, |i, rt, r| {
        if r < warmup {
            let t = run_once(c, &rt.name, &format!("warm-{}-{r}", rt.label))?;
            eprintln!("[start] warm-up {} {}/{warmup}: {t:.1} ms", rt.label, r + 1);
        } else {
            let n = r - warmup;
            let t = run_once(c, &rt.name, &format!("lat-{}-{n}", rt.label))?;
            eprintln!("[start] {} {}/{runs}: {t:.1} ms", rt.label, n + 1);
            times[i].push(t);
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
        .map(|j| spawn_run(c, runtime, &format!("{prefix}-{j}")))
        .collect::<Result<Vec<_>>>()?;
    let deadline = start + CTR_TIMEOUT;
    let mut last = start;
    for p in pending {
        last = last.max(p.finish(deadline)?);
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
