//! Per-call costs, printed (run with `--nocapture`, ideally `--release`):
//! native and mediated `openat`+`close` and `stat`, and syscalls the filter
//! lets through (`fstat`, `getppid`), natively and under the filter.

use std::time::Instant;

use super::harness::{policy, supervise, view, Rootfs, Setup};
use super::ops::*;

/// Iterations per measurement.
const N: u32 = 20_000;

/// Nanoseconds per iteration of `op`.
fn per_call(mut op: impl FnMut()) -> f64 {
    for _ in 0..N / 10 {
        op();
    }
    let start = Instant::now();
    for _ in 0..N {
        op();
    }
    start.elapsed().as_nanos() as f64 / f64::from(N)
}

fn open_close(path: &str) {
    if let Ok(fd) = open(path, libc::O_RDONLY | libc::O_CLOEXEC) {
        close(fd);
    }
}

fn getppid() {
    // SAFETY: getppid takes nothing.
    unsafe { libc::syscall(libc::SYS_getppid) };
}

/// `fstat(fd)`.
fn fstat(fd: i32) {
    // SAFETY: an all-zero stat is valid; fstat writes one.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::fstat(fd, &mut st) };
}

/// The costs of `open`+`close`, `stat`, `fstat` and `getppid` in this
/// process.
fn measure(file: &str) -> [f64; 4] {
    let fd = open(file, libc::O_RDONLY | libc::O_CLOEXEC).expect("open");
    let costs = [
        per_call(|| open_close(file)),
        per_call(|| {
            let _ = stat(file);
        }),
        per_call(|| fstat(fd)),
        per_call(getppid),
    ];
    close(fd);
    costs
}

#[test]
fn per_call_costs() {
    let rootfs = Rootfs::new();
    let native = measure(rootfs.path("pub/file").to_str().unwrap());
    let results = rootfs.path("tmp/results");
    supervise(&rootfs, policy(), view(), Setup::default(), || {
        let filtered = measure("/pub/file");
        let text = filtered.map(|v| v.to_string()).join(" ");
        std::fs::write("/tmp/results", text).map_err(|e| e.to_string())
    });
    let text = std::fs::read_to_string(results).unwrap();
    let filtered: Vec<f64> = text.split(' ').map(|v| v.parse().unwrap()).collect();
    println!("per call (ns)        native   filtered   ratio");
    for (i, name) in ["openat+close", "stat", "fstat", "getppid"]
        .iter()
        .enumerate()
    {
        println!(
            "{name:<16} {:>10.0} {:>10.0} {:>7.1}x",
            native[i],
            filtered[i],
            filtered[i] / native[i]
        );
    }
}
