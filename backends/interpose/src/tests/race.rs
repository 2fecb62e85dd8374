//! Concurrency: a path swapped under the supervisor, a signal interrupting
//! a mediated call, a thousand processes opening at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::harness::{ensure, policy, supervise, view, Rootfs, Setup};
use super::ops::*;

/// Opens per run of the swap test.
const OPENS: usize = 10_000;

/// Both paths padded to the same length, NUL-terminated.
const ALLOWED: &[u8; 16] = b"/pub/file\0\0\0\0\0\0\0";
const HIDDEN: &[u8; 16] = b"/etc/secret\0\0\0\0\0";

#[test]
fn a_path_swapped_by_another_thread_never_reaches_a_hidden_file() {
    let rootfs = Rootfs::new();
    let stats = supervise(&rootfs, policy(), view(), Setup::default(), || {
        // The buffer is shared with a thread that rewrites it byte by byte
        // between an allowed and a hidden path.
        let buf: &'static mut [u8; 16] = Box::leak(Box::new(*ALLOWED));
        let addr = buf.as_mut_ptr() as usize;
        let stop = Arc::new(AtomicBool::new(false));
        let flips = Arc::new(AtomicUsize::new(0));
        let swapper = {
            let (stop, flips) = (Arc::clone(&stop), Arc::clone(&flips));
            std::thread::spawn(move || {
                let p = addr as *mut u8;
                while !stop.load(Ordering::Relaxed) {
                    for src in [HIDDEN, ALLOWED] {
                        for (i, &b) in src.iter().enumerate() {
                            let at = p.wrapping_add(i);
                            // SAFETY: `at` is within the leaked 16-byte
                            // buffer, which lives for the rest of the
                            // process; volatile keeps the torn writes.
                            unsafe { at.write_volatile(b) };
                        }
                    }
                    flips.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let (mut opened, mut refused) = (0, 0);
        for _ in 0..OPENS {
            // SAFETY: the path pointer is the shared buffer, always
            // NUL-terminated; openat only reads it.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    addr as *const libc::c_char,
                    libc::O_RDONLY | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                refused += 1;
                continue;
            }
            opened += 1;
            let content = read_close(fd as i32);
            ensure!(
                content != b"secret",
                "read the hidden file after {opened} opens"
            );
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().map_err(|_| "swapper panicked".to_string())?;
        ensure!(
            flips.load(Ordering::Relaxed) > 0,
            "the path was never swapped"
        );
        ensure!(
            opened > 0 && refused > 0,
            "opened {opened}, refused {refused}: no race took place"
        );
        Ok(())
    });
    assert_eq!(stats.get("openat").notified as usize, OPENS, "{stats}");
}

/// Set by the signal handler.
static SIGNALLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.fetch_add(1, Ordering::SeqCst);
}

/// Installs `on_signal` for SIGUSR1, with SA_RESTART if `restart`.
fn install(restart: bool) -> Result<(), String> {
    // SAFETY: an all-zero sigaction is valid.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
    sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
    // SAFETY: sigaction reads `sa`; the handler only touches an atomic.
    if unsafe { libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()) } != 0 {
        return Err(format!("sigaction: {}", errno()));
    }
    Ok(())
}

/// Sends SIGUSR1 to thread `tid` after a pause, then runs `then`.
fn signal_later(tid: i32, then: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: tgkill takes integers.
        unsafe { libc::syscall(libc::SYS_tgkill, getpid(), tid, libc::SIGUSR1) };
        std::thread::sleep(Duration::from_millis(100));
        then();
    })
}

fn gettid() -> i32 {
    // SAFETY: gettid takes nothing.
    unsafe { libc::gettid() }
}

fn mkfifo(path: &str) -> Result<(), String> {
    let p = std::ffi::CString::new(path).unwrap();
    // SAFETY: mkfifo reads the path.
    if unsafe { libc::mkfifo(p.as_ptr(), 0o600) } != 0 {
        return Err(format!("mkfifo: {}", errno()));
    }
    Ok(())
}

/// Once the supervisor has received a call, a signal waits for the
/// answer (the filter has `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`): a
/// FIFO open the supervisor is blocked in completes when a writer comes,
/// with or without SA_RESTART, and the handler runs after it. Meanwhile
/// other calls are answered (the writer's open is one).
#[test]
fn a_signal_waits_for_a_received_call() {
    let rootfs = Rootfs::new();
    let stats = supervise(&rootfs, policy(), view(), Setup::default(), || {
        for (fifo, restart, count) in [("/tmp/fifo", true, 1), ("/tmp/fifo2", false, 2)] {
            mkfifo(fifo)?;
            install(restart)?;
            let writer = signal_later(gettid(), move || {
                if let Ok(fd) = open(fifo, libc::O_WRONLY | libc::O_CLOEXEC) {
                    // SAFETY: write reads 4 bytes.
                    unsafe { libc::write(fd, b"ping".as_ptr().cast(), 4) };
                    close(fd);
                }
            });
            let fd = open(fifo, libc::O_RDONLY | libc::O_CLOEXEC)
                .map_err(|e| format!("open of {fifo} (SA_RESTART {restart}): {e}"))?;
            ensure!(
                SIGNALLED.load(Ordering::SeqCst) == count,
                "the handler did not run"
            );
            ensure!(read_close(fd) == b"ping", "data through {fifo}");
            writer.join().map_err(|_| "writer panicked".to_string())?;
        }
        ensure!(read_file("/pub/file") == Ok("public".into()), "later call");
        Ok(())
    });
    assert!(stats.get("openat").notified >= 5, "{stats}");
}

#[test]
fn a_thousand_processes_each_open_a_file() {
    let rootfs = Rootfs::new();
    let stats = supervise(&rootfs, policy(), view(), Setup::default(), || {
        let mut pids = Vec::new();
        for _ in 0..1000 {
            // SAFETY: the child only makes system calls and leaves
            // through _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let ok = read_file("/pub/file") == Ok("public".into())
                    && open("/etc/secret", libc::O_RDONLY) == Err(libc::ENOENT);
                // SAFETY: _exit ends the child at once.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            ensure!(pid > 0, "fork: {}", errno());
            pids.push(pid);
            if pids.len() == 50 {
                reap(&mut pids)?;
            }
        }
        reap(&mut pids)
    });
    assert!(stats.get("openat").emulated >= 1000, "{stats}");
    assert!(stats.get("openat").denied >= 1000, "{stats}");
}

/// Waits for every pid in `pids`, failing if one failed.
fn reap(pids: &mut Vec<i32>) -> Result<(), String> {
    for pid in pids.drain(..) {
        let mut status = 0;
        // SAFETY: waitpid writes the status.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        ensure!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child {pid}: {status:#x}"
        );
    }
    Ok(())
}

#[test]
fn the_supervisor_ends_with_its_targets_even_with_a_call_blocked() {
    let rootfs = Rootfs::new();
    let start = std::time::Instant::now();
    let stats = supervise(&rootfs, policy(), view(), Setup::default(), || {
        mkfifo("/tmp/fifo")?;
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: _exit ends the whole target at once.
            unsafe { libc::_exit(0) };
        });
        // Blocks in the supervisor until the target is gone.
        let _ = open("/tmp/fifo", libc::O_RDONLY);
        Err("the FIFO open returned".into())
    });
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert_eq!(stats.get("openat").notified, 1, "{stats}");
    // Release the worker still blocked in the open, which then ends.
    let fifo = std::ffi::CString::new(
        rootfs
            .path("tmp/fifo")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: open reads the path.
    let fd = unsafe {
        libc::open(
            fifo.as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    assert!(fd >= 0, "nobody blocked in the FIFO open: {}", errno());
    close(fd);
}
