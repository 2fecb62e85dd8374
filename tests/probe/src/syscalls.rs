//! `syscalls`: the cost of common system calls inside the container, in
//! nanoseconds per operation, one JSON line per operation.
//!
//! Each operation runs a tenth of its iterations untimed first, then its
//! iterations timed as one loop. Cheap operations run `--iterations` times;
//! the pipe round trip a quarter of that and fork+exec+wait a hundredth
//! (at least 10), so that every operation takes a comparable time.

use std::ffi::CString;
use std::time::Instant;

use serde_json::json;

use crate::error::{check, Error, Result};

/// Iterations of the cheap operations unless `--iterations` says otherwise.
pub const DEFAULT_ITERATIONS: u64 = 20_000;

/// The file in the image that `openat` and `stat` use.
const ROOTFS_FILE: &str = "/etc/passwd";

/// The program `fork_exec_wait` runs.
const TRUE: &str = "/bin/true";

/// Bytes per `read`/`write`/`mmap`.
const BLOCK: usize = 4096;

/// What the operations share: paths as C strings, an open scratch file and
/// a buffer.
struct Ctx {
    rootfs_file: CString,
    true_path: CString,
    scratch: libc::c_int,
    buf: Vec<u8>,
}

impl Ctx {
    /// Opens an unlinked 4 KiB scratch file in `/tmp` of the container.
    fn new() -> Result<Self> {
        let dir = CString::new("/tmp").map_err(|e| Error::invalid(e.to_string()))?;
        // SAFETY: open(2) with a valid NUL-terminated path; O_TMPFILE
        // creates an unnamed file that vanishes when closed.
        let fd = unsafe { libc::open(dir.as_ptr(), libc::O_TMPFILE | libc::O_RDWR, 0o600) };
        let scratch = check(fd.into(), || "creating an unnamed file in /tmp".into())? as i32;
        let buf = vec![0x5a_u8; BLOCK];
        // SAFETY: write(2) of `buf`'s BLOCK valid bytes to our own fd.
        let n = unsafe { libc::write(scratch, buf.as_ptr().cast(), BLOCK) };
        check(n as libc::c_long, || "filling the scratch file".into())?;
        Ok(Self {
            rootfs_file: CString::new(ROOTFS_FILE).map_err(|e| Error::invalid(e.to_string()))?,
            true_path: CString::new(TRUE).map_err(|e| Error::invalid(e.to_string()))?,
            scratch,
            buf,
        })
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: close(2) of the scratch fd, which only this struct owns.
        unsafe {
            libc::close(self.scratch);
        }
    }
}

/// One measured operation: its name, how its iteration count relates to
/// `--iterations`, and the code that runs it `n` times.
struct Op {
    name: &'static str,
    divisor: u64,
    run: fn(&mut Ctx, u64) -> Result<()>,
}

const OPS: [Op; 9] = [
    Op {
        name: "getppid",
        divisor: 1,
        run: getppid,
    },
    Op {
        name: "clock_gettime",
        divisor: 1,
        run: clock_gettime,
    },
    Op {
        name: "openat_close",
        divisor: 1,
        run: openat_close,
    },
    Op {
        name: "stat",
        divisor: 1,
        run: stat,
    },
    Op {
        name: "read_4k",
        divisor: 1,
        run: read_4k,
    },
    Op {
        name: "write_4k",
        divisor: 1,
        run: write_4k,
    },
    Op {
        name: "mmap_munmap_4k",
        divisor: 1,
        run: mmap_munmap,
    },
    Op {
        name: "pipe_pingpong",
        divisor: 4,
        run: pipe_pingpong,
    },
    Op {
        name: "fork_exec_wait",
        divisor: 100,
        run: fork_exec_wait,
    },
];

/// Measures every operation and prints one JSON line each.
pub fn run(iterations: u64) -> Result<()> {
    let mut ctx = Ctx::new()?;
    for op in &OPS {
        let n = (iterations / op.divisor).max(10);
        (op.run)(&mut ctx, (n / 10).max(1))?;
        let start = Instant::now();
        (op.run)(&mut ctx, n)?;
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "{}",
            json!({ "op": op.name, "iterations": n, "ns_per_op": ns })
        );
    }
    Ok(())
}

fn getppid(_: &mut Ctx, n: u64) -> Result<()> {
    for _ in 0..n {
        // SAFETY: getppid(2) has no arguments and cannot fail; issued as a
        // raw syscall so no library cache can answer it.
        unsafe {
            libc::syscall(libc::SYS_getppid);
        }
    }
    Ok(())
}

fn clock_gettime(_: &mut Ctx, n: u64) -> Result<()> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    for _ in 0..n {
        // SAFETY: clock_gettime(3) writes into a valid timespec.
        let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        check(r.into(), || "clock_gettime(CLOCK_MONOTONIC)".into())?;
    }
    Ok(())
}

fn openat_close(ctx: &mut Ctx, n: u64) -> Result<()> {
    for _ in 0..n {
        // SAFETY: openat(2) with a valid NUL-terminated path.
        let fd = unsafe {
            libc::openat(
                libc::AT_FDCWD,
                ctx.rootfs_file.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        check(fd.into(), || format!("opening {ROOTFS_FILE}"))?;
        // SAFETY: close(2) of the fd just opened.
        unsafe {
            libc::close(fd);
        }
    }
    Ok(())
}

fn stat(ctx: &mut Ctx, n: u64) -> Result<()> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    for _ in 0..n {
        // SAFETY: stat(2) with a valid path and a valid out-pointer.
        let r = unsafe { libc::stat(ctx.rootfs_file.as_ptr(), &mut st) };
        check(r.into(), || format!("stat {ROOTFS_FILE}"))?;
    }
    Ok(())
}

fn read_4k(ctx: &mut Ctx, n: u64) -> Result<()> {
    for _ in 0..n {
        // SAFETY: pread(2) into `buf`, which holds BLOCK bytes.
        let r = unsafe { libc::pread(ctx.scratch, ctx.buf.as_mut_ptr().cast(), BLOCK, 0) };
        if r != BLOCK as isize {
            return Err(Error::last_os(format!("reading {BLOCK} bytes: got {r}")));
        }
    }
    Ok(())
}

fn write_4k(ctx: &mut Ctx, n: u64) -> Result<()> {
    for _ in 0..n {
        // SAFETY: pwrite(2) of `buf`, which holds BLOCK bytes.
        let r = unsafe { libc::pwrite(ctx.scratch, ctx.buf.as_ptr().cast(), BLOCK, 0) };
        if r != BLOCK as isize {
            return Err(Error::last_os(format!("writing {BLOCK} bytes: wrote {r}")));
        }
    }
    Ok(())
}

/// Maps 4 KiB, touches it (so the page fault is part of the cost) and
/// unmaps it.
fn mmap_munmap(_: &mut Ctx, n: u64) -> Result<()> {
    for _ in 0..n {
        // SAFETY: an anonymous private mapping at an address of the
        // kernel's choice; it overlaps nothing of ours.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BLOCK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os(format!("mmap of {BLOCK} bytes")));
        }
        let byte = p.cast::<u8>();
        // SAFETY: `byte` points at the start of the writable mapping above.
        unsafe {
            byte.write_volatile(1);
        }
        // SAFETY: unmaps exactly the mapping created above, no longer used.
        unsafe {
            libc::munmap(p, BLOCK);
        }
    }
    Ok(())
}

/// A pipe as (read end, write end).
fn pipe() -> Result<(libc::c_int, libc::c_int)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) writes two fds into a valid two-element array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    check(r.into(), || "pipe2".into())?;
    Ok((fds[0], fds[1]))
}

fn close(fd: libc::c_int) {
    // SAFETY: close(2) of an fd this module opened and no longer uses.
    unsafe {
        libc::close(fd);
    }
}

/// Reads or writes exactly one byte; false at end of file or on error.
fn one_byte(fd: libc::c_int, write: bool) -> bool {
    let mut b = [0u8; 1];
    let r = if write {
        // SAFETY: write(2) of one byte from a valid buffer.
        unsafe { libc::write(fd, b.as_ptr().cast(), 1) }
    } else {
        // SAFETY: read(2) of one byte into a valid buffer.
        unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) }
    };
    r == 1
}

/// Waits for child `pid` and returns its wait status.
fn wait(pid: libc::pid_t) -> Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid(2) on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        if crate::errno::last() != libc::EINTR {
            return Err(Error::last_os(format!("waiting for child {pid}")));
        }
    }
}

/// Forks; the child runs `child` and exits with its return value.
fn fork(child: impl FnOnce() -> libc::c_int) -> Result<libc::pid_t> {
    // SAFETY: the probe is single-threaded here, so the child may run any
    // code; it leaves through _exit and never returns.
    let pid = unsafe { libc::fork() };
    check(pid.into(), || "fork".into())?;
    if pid == 0 {
        let code = child();
        // SAFETY: _exit(2) ends the child without running the parent's
        // destructors or flushing its buffers twice.
        unsafe { libc::_exit(code) }
    }
    Ok(pid)
}

/// One byte to a child process and back, through two pipes.
fn pipe_pingpong(_: &mut Ctx, n: u64) -> Result<()> {
    let (to_child_r, to_child_w) = pipe()?;
    let (to_parent_r, to_parent_w) = pipe()?;
    let pid = fork(|| {
        close(to_child_w);
        close(to_parent_r);
        while one_byte(to_child_r, false) {
            if !one_byte(to_parent_w, true) {
                return 1;
            }
        }
        0
    });
    close(to_child_r);
    close(to_parent_w);
    let result = match pid {
        Ok(pid) => {
            let mut trips = Ok(());
            for i in 0..n {
                if !one_byte(to_child_w, true) || !one_byte(to_parent_r, false) {
                    trips = Err(Error::last_os(format!("pipe round trip {i}")));
                    break;
                }
            }
            close(to_child_w);
            wait(pid).and(trips)
        }
        Err(e) => {
            close(to_child_w);
            Err(e)
        }
    };
    close(to_parent_r);
    result
}

/// fork(2), execv(3) of `/bin/true` in the child, waitpid(2) in the parent.
fn fork_exec_wait(ctx: &mut Ctx, n: u64) -> Result<()> {
    let argv = [ctx.true_path.as_ptr(), std::ptr::null()];
    for _ in 0..n {
        let pid = fork(|| {
            // SAFETY: execv(3) with a valid path and a NULL-terminated argv.
            unsafe {
                libc::execv(argv[0], argv.as_ptr());
            }
            127
        })?;
        let status = wait(pid)?;
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(Error::invalid(format!(
                "{TRUE} ended with wait status {status:#x}"
            )));
        }
    }
    Ok(())
}
