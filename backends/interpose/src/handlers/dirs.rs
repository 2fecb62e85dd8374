//! Directory listings without the names of hidden paths: `getdents64` on a
//! directory that directly contains a hidden path is performed by the
//! supervisor on the caller's own fd (shared file position), with the
//! hidden entries dropped.
//!
//! Listings of every other directory run in the kernel (CONTINUE): they
//! name nothing hidden. A thread that swapped the fd for such a directory
//! in the instant before the kernel runs the call would see the hidden
//! names, never their contents (the masking mounts cover those); the old
//! `getdents` syscall, which glibc does not use, is not mediated and shows
//! the names too.
//!
//! Reading moves the directory's position. If the caller is interrupted
//! before the answer reaches it, the position is put back, so that the
//! restarted call reads the same entries.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::handlers::{Ctx, Reply};
use crate::memory;
use crate::notify::Answer;
use crate::paths::{self, Unresolved};

/// The largest buffer one call reads into.
const MAX_BUF: usize = 1 << 16;

/// Offset of `d_reclen` in `struct linux_dirent64` (after `d_ino` and
/// `d_off`), and of `d_name` (after `d_reclen` and `d_type`).
const RECLEN_AT: usize = 16;
const NAME_AT: usize = 19;

/// `getdents64(fd, buf, count)`.
pub(crate) fn getdents64(ctx: &Ctx<'_>) -> Reply {
    let thread = match ctx.thread() {
        Ok(Some(thread)) => thread,
        Ok(None) => return Reply::Gone,
        Err(answer) => return answer.into(),
    };
    let dir = match paths::resolve(ctx.tid(), &thread, ctx.int_arg(0), b".") {
        Ok(dir) => dir,
        Err(Unresolved::Fails(_) | Unresolved::Outside) => return Reply::Continue,
    };
    let hidden: Vec<&[u8]> = ctx
        .shared
        .policy
        .hidden
        .iter()
        .filter(|h| h.parent() == Some(dir.as_path()))
        .filter_map(|h| h.file_name())
        .map(OsStrExt::as_bytes)
        .collect();
    if hidden.is_empty() {
        return Reply::Continue;
    }
    let fd = match thread.fetch_fd(ctx.int_arg(0)) {
        Ok(fd) => fd,
        Err(e) => return Answer::Error(e.raw_os_error().unwrap_or(libc::EBADF)).into(),
    };
    // SAFETY: lseek takes integers.
    let start = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_CUR) };
    let size = (ctx.arg(2) as usize).min(MAX_BUF);
    let mut buf = vec![0u8; size];
    let kept = loop {
        let n = match getdents(&fd, &mut buf) {
            Ok(n) => n,
            Err(e) => return Answer::Error(e.raw_os_error().unwrap_or(libc::EIO)).into(),
        };
        if n == 0 {
            break Vec::new();
        }
        let kept = without(&buf[..n], &hidden);
        if !kept.is_empty() {
            break kept;
        }
    };
    let restore = || {
        // SAFETY: lseek takes integers; a directory accepts the position
        // it reported.
        unsafe { libc::lseek(fd.as_raw_fd(), start, libc::SEEK_SET) };
    };
    if !ctx.still_pending() {
        restore();
        return Reply::Gone;
    }
    if let Err(e) = memory::write(ctx.tid(), ctx.arg(1), &kept) {
        restore();
        return Answer::Error(e.raw_os_error().unwrap_or(libc::EFAULT)).into();
    }
    match ctx
        .shared
        .listener
        .answer(ctx.n.id, Answer::Value(kept.len() as i64))
    {
        Ok(()) => Reply::Answered,
        Err(_) => {
            restore();
            Reply::Gone
        }
    }
}

/// The entries of `raw` whose names are not in `hidden`.
fn without(raw: &[u8], hidden: &[&[u8]]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(raw.len());
    let mut at = 0;
    while at + NAME_AT <= raw.len() {
        let reclen = usize::from(u16::from_ne_bytes([
            raw[at + RECLEN_AT],
            raw[at + RECLEN_AT + 1],
        ]));
        if reclen == 0 || at + reclen > raw.len() {
            break;
        }
        let entry = &raw[at..at + reclen];
        let name = &entry[NAME_AT..];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        if !hidden.contains(&name) {
            kept.extend_from_slice(entry);
        }
        at += reclen;
    }
    kept
}

/// One `getdents64` into `buf`.
fn getdents(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: getdents64 writes at most buf.len() bytes into `buf`.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
