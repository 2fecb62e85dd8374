//! Output written just before a container exits is delivered in full.
//!
//! The runtime's duty is to get everything the container wrote into the
//! I/O fifos before it reports the exit and closes them. The test reads the
//! fifos itself instead of through a foreground `ctr run`: under CPU load
//! `ctr`'s own copy sometimes closes the stdout fifo before reading it to
//! the end (seen with runc as with Strata: `strace` shows ctr close the
//! fifo's descriptor without a read having returned end-of-file), which
//! would blame the runtime for a client's loss.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use strata_e2e::{runtime_tests, Containerd, RunOptions};

/// 1 MiB.
const SIZE: usize = 1 << 20;
/// How many containers in a row must deliver everything.
const RUNS: usize = 5;
/// How long reading a fifo to its end may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A shell command writing `SIZE` bytes of `x` to `fd` and exiting right
/// after.
fn writer(fd: u8) -> String {
    format!("head -c {SIZE} /dev/zero | tr '\\000' x >&{fd}")
}

/// Opens a fifo (the runtime holds its write side, so this does not
/// block) and reads it to end-of-file on a thread.
fn read_fifo(path: &Path) -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let file = File::open(path);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let read = || -> std::io::Result<Vec<u8>> {
            let mut buf = Vec::new();
            file?.read_to_end(&mut buf)?;
            Ok(buf)
        };
        let _ = tx.send(read());
    });
    rx
}

fn fifo_entries(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// What one container delivered.
struct Delivered {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: i32,
}

/// Runs `script` detached, reads its stdout and stderr fifos to the end
/// (the end comes when the runtime closes them), then removes the
/// container and returns what arrived with the exit code.
///
/// `script` starts only once the fifos are open here: `ctr run -d` reads
/// them too until it exits.
fn run_and_read(c: &Containerd, id: &str, script: &str) -> Delivered {
    let before = fifo_entries(c.fifo_dir());
    let gated = format!("until [ -e /tmp/go ]; do sleep 0.01; done; {script}");
    c.run_detached(&RunOptions::new(id, ["sh", "-c", &gated]))
        .unwrap();
    let new: Vec<PathBuf> = fifo_entries(c.fifo_dir())
        .difference(&before)
        .cloned()
        .collect();
    let [set] = &new[..] else {
        panic!("expected one new fifo set for {id}, found {new:?}")
    };
    let stdout = read_fifo(&set.join(format!("{id}-stdout")));
    let stderr = read_fifo(&set.join(format!("{id}-stderr")));
    let go = c.exec(id, "go", &["touch", "/tmp/go"]).unwrap();
    assert!(go.success(), "{go}");
    let get = |rx: mpsc::Receiver<std::io::Result<Vec<u8>>>, what: &str| {
        rx.recv_timeout(READ_TIMEOUT)
            .unwrap_or_else(|_| panic!("{id}: {what} fifo not closed within {READ_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{id}: reading the {what} fifo: {e}"))
    };
    let stdout = get(stdout, "stdout");
    let stderr = get(stderr, "stderr");
    c.wait_status(id, "STOPPED", Duration::from_secs(20))
        .unwrap();
    let code = c.delete_task(id).unwrap();
    c.delete_container(id).unwrap();
    Delivered {
        stdout,
        stderr,
        code,
    }
}

/// Checks that `bytes` is exactly `SIZE` bytes of `x`.
#[track_caller]
fn assert_all_x(what: &str, run: usize, bytes: &[u8]) {
    assert_eq!(
        bytes.len(),
        SIZE,
        "run {run}: {what} delivered {} of {SIZE} bytes",
        bytes.len()
    );
    if let Some(i) = bytes.iter().position(|b| *b != b'x') {
        panic!("run {run}: {what} has a foreign byte at offset {i}");
    }
}

/// 1 MiB on stdout, then exit: all of it arrives, and nothing on stderr.
fn large_stdout_before_exit(c: &Containerd) {
    for run in 0..RUNS {
        let d = run_and_read(c, &format!("stdout-{run}"), &writer(1));
        assert_eq!(d.code, 0, "run {run}");
        assert_all_x("stdout", run, &d.stdout);
        assert!(d.stderr.is_empty(), "run {run}: unexpected stderr");
    }
}

/// 1 MiB on stderr, then exit: all of it arrives, and nothing on stdout.
fn large_stderr_before_exit(c: &Containerd) {
    for run in 0..RUNS {
        let d = run_and_read(c, &format!("stderr-{run}"), &writer(2));
        assert_eq!(d.code, 0, "run {run}");
        assert_all_x("stderr", run, &d.stderr);
        assert!(d.stdout.is_empty(), "run {run}: unexpected stdout");
    }
}

/// Both streams at once, with a non-zero exit code.
fn large_both_before_exit(c: &Containerd) {
    for run in 0..RUNS {
        let script = format!("{} & {}; wait; exit 3", writer(1), writer(2));
        let d = run_and_read(c, &format!("both-{run}"), &script);
        assert_eq!(d.code, 3, "run {run}");
        assert_all_x("stdout", run, &d.stdout);
        assert_all_x("stderr", run, &d.stderr);
    }
}

runtime_tests!(
    interpose:
    large_stdout_before_exit,
    large_stderr_before_exit,
    large_both_before_exit
);
