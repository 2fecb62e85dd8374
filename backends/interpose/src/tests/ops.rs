//! System calls as target bodies make them: results as `Result<_, errno>`.

use std::ffi::CString;

/// The errno of the last failed call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn c(path: &str) -> CString {
    CString::new(path).expect("no NUL in test paths")
}

/// `ret`, or the errno if it is negative.
fn check(ret: i64) -> Result<i64, i32> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// `openat(dirfd, path, flags, 0644)`.
pub fn openat(dirfd: i32, path: &str, flags: i32) -> Result<i32, i32> {
    let p = c(path);
    // SAFETY: openat reads the NUL-terminated path.
    check(i64::from(unsafe {
        libc::openat(dirfd, p.as_ptr(), flags, 0o644)
    }))
    .map(|fd| fd as i32)
}

/// `open(path, flags, 0644)` (glibc makes it `openat(AT_FDCWD, …)`).
pub fn open(path: &str, flags: i32) -> Result<i32, i32> {
    openat(libc::AT_FDCWD, path, flags)
}

/// The raw `open` syscall.
pub fn sys_open(path: &str, flags: i32) -> Result<i32, i32> {
    let p = c(path);
    // SAFETY: open reads the NUL-terminated path.
    check(unsafe { libc::syscall(libc::SYS_open, p.as_ptr(), flags, 0o644) }).map(|fd| fd as i32)
}

/// Reads all of `fd` and closes it.
pub fn read_close(fd: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: read writes at most buf.len() bytes into buf.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    close(fd);
    out
}

/// The contents of `path`, as a string.
pub fn read_file(path: &str) -> Result<String, i32> {
    let fd = open(path, libc::O_RDONLY | libc::O_CLOEXEC)?;
    Ok(String::from_utf8_lossy(&read_close(fd)).into_owned())
}

/// `close(fd)`.
pub fn close(fd: i32) {
    // SAFETY: close takes an integer.
    unsafe { libc::close(fd) };
}

/// `stat(path)`.
pub fn stat(path: &str) -> Result<libc::stat, i32> {
    let p = c(path);
    // SAFETY: an all-zero stat is valid; stat writes one.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: stat reads the path and writes `st`.
    check(i64::from(unsafe { libc::stat(p.as_ptr(), &mut st) })).map(|_| st)
}

/// `statx(AT_FDCWD, path, 0, STATX_BASIC_STATS)`.
pub fn statx(path: &str) -> Result<libc::statx, i32> {
    let p = c(path);
    // SAFETY: an all-zero statx is valid.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx reads the path and writes `st`.
    check(i64::from(unsafe {
        libc::statx(
            libc::AT_FDCWD,
            p.as_ptr(),
            0,
            libc::STATX_BASIC_STATS,
            &mut st,
        )
    }))
    .map(|_| st)
}

/// `access(path, mode)`.
pub fn access(path: &str, mode: i32) -> Result<(), i32> {
    let p = c(path);
    // SAFETY: access reads the path.
    check(i64::from(unsafe { libc::access(p.as_ptr(), mode) })).map(drop)
}

/// `unlink(path)`.
pub fn unlink(path: &str) -> Result<(), i32> {
    let p = c(path);
    // SAFETY: unlink reads the path.
    check(i64::from(unsafe { libc::unlink(p.as_ptr()) })).map(drop)
}

/// `mkdir(path, 0755)`.
pub fn mkdir(path: &str) -> Result<(), i32> {
    let p = c(path);
    // SAFETY: mkdir reads the path.
    check(i64::from(unsafe { libc::mkdir(p.as_ptr(), 0o755) })).map(drop)
}

/// `rename(from, to)`.
pub fn rename(from: &str, to: &str) -> Result<(), i32> {
    let (f, t) = (c(from), c(to));
    // SAFETY: rename reads both paths.
    check(i64::from(unsafe { libc::rename(f.as_ptr(), t.as_ptr()) })).map(drop)
}

/// `execve(path, [path], [])`; returns only on failure.
pub fn execve(path: &str) -> i32 {
    let p = c(path);
    let argv = [p.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: execve reads the path and the NULL-terminated arrays.
    unsafe { libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    errno()
}

/// `fcntl(fd, F_GETFD)`.
pub fn fd_flags(fd: i32) -> i32 {
    // SAFETY: F_GETFD takes no argument.
    unsafe { libc::fcntl(fd, libc::F_GETFD) }
}

/// `getpid()`.
pub fn getpid() -> i32 {
    // SAFETY: getpid takes nothing.
    unsafe { libc::getpid() }
}
