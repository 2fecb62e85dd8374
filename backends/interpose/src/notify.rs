//! The kernel side of seccomp user notification: receiving calls, checking
//! that they are still pending, answering them, and injecting fds.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::SupervisorError;

/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (Linux 6.6): the target is woken on
/// the CPU of the thread that answers it. Debian 12's headers lack it.
const FD_SYNC_WAKE_UP: u64 = 1;

/// A received call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Notification {
    /// The kernel's cookie for the call; valid until it is answered or the
    /// caller is interrupted.
    pub id: u64,
    /// The calling thread's id, in the supervisor's pid namespace.
    pub tid: i32,
    /// The syscall number.
    pub nr: i32,
    /// The syscall's arguments.
    pub args: [u64; 6],
}

/// How a call is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The call returns this value.
    Value(i64),
    /// The call fails with this errno.
    Error(i32),
    /// The kernel runs the call as the caller made it.
    Continue,
}

/// The listener fd of a notifying filter, with the structure sizes of the
/// running kernel.
pub(crate) struct Listener {
    fd: OwnedFd,
    /// `sizeof(struct seccomp_notif)` of the kernel, which may be larger
    /// than the one libc knows.
    notif_size: usize,
}

impl Listener {
    /// Takes over `fd`, asks the kernel for its structure sizes, and turns on
    /// synchronous wake-up where the kernel has it.
    pub(crate) fn new(fd: OwnedFd) -> Result<Listener, SupervisorError> {
        let mut sizes = libc::seccomp_notif_sizes {
            seccomp_notif: 0,
            seccomp_notif_resp: 0,
            seccomp_data: 0,
        };
        // SAFETY: SECCOMP_GET_NOTIF_SIZES writes one seccomp_notif_sizes to
        // the pointer, which points at one that lives across the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_GET_NOTIF_SIZES,
                0,
                &mut sizes as *mut libc::seccomp_notif_sizes,
            )
        };
        if ret != 0 {
            return Err(SupervisorError::last_os(
                "asking the kernel for seccomp notification sizes",
            ));
        }
        let notif_size =
            usize::from(sizes.seccomp_notif).max(std::mem::size_of::<libc::seccomp_notif>());
        let listener = Listener { fd, notif_size };
        if let Err(e) = listener.set_sync_wake_up() {
            log::info!("seccomp listener: no synchronous wake-up: {e}");
        }
        Ok(listener)
    }

    /// Asks the kernel to wake the target on the CPU of the thread that
    /// answers it, and that thread on the target's CPU when a call arrives
    /// (`SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`, Linux 6.6): a round trip then
    /// costs no cross-CPU wake-ups.
    pub(crate) fn set_sync_wake_up(&self) -> io::Result<()> {
        // SAFETY: SET_FLAGS takes the flags by value (despite its
        // _IOW(u64) number) and touches no memory; kernels without it fail
        // with EINVAL and change nothing.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                FD_SYNC_WAKE_UP as libc::c_ulong,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the next call. `ENOENT` means the call was cancelled
    /// before it could be received, or that no target is left.
    pub(crate) fn receive(&self) -> io::Result<Notification> {
        // u64 elements keep the buffer aligned for seccomp_notif; kernels
        // so far use 80 bytes, room is left for growth.
        let mut stack = [0u64; 32];
        let mut heap = Vec::new();
        let buf: &mut [u64] = if self.notif_size <= stack.len() * 8 {
            &mut stack
        } else {
            heap.resize(self.notif_size.div_ceil(8), 0u64);
            &mut heap
        };
        // SAFETY: RECV writes at most the kernel's sizeof(seccomp_notif)
        // bytes, which the zeroed buffer holds.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                buf.as_mut_ptr(),
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the buffer is at least sizeof(seccomp_notif), aligned for
        // it, and the kernel filled it in.
        let notif = unsafe { std::ptr::read(buf.as_ptr().cast::<libc::seccomp_notif>()) };
        Ok(Notification {
            id: notif.id,
            tid: notif.pid as i32,
            nr: notif.data.nr,
            args: notif.data.args,
        })
    }

    /// Whether call `id` is still pending: its caller was not interrupted
    /// and has not gone. Checked after every read of the caller's memory
    /// and before acting on what was read, as the caller's thread id may
    /// otherwise name another thread by then.
    pub(crate) fn is_valid(&self, id: u64) -> bool {
        // SAFETY: ID_VALID reads one u64 from the pointer, which points at
        // `id` for the duration of the call.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                &id as *const u64,
            )
        };
        ret == 0
    }

    /// Answers call `id`. `ENOENT` means the call is no longer pending.
    pub(crate) fn answer(&self, id: u64, answer: Answer) -> io::Result<()> {
        let (val, error, flags) = match answer {
            Answer::Value(v) => (v, 0, 0),
            Answer::Error(e) => (0, -e, 0),
            Answer::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
        };
        let mut resp = libc::seccomp_notif_resp {
            id,
            val,
            error,
            flags,
        };
        // SAFETY: SEND reads one seccomp_notif_resp from the pointer, which
        // points at `resp` for the duration of the call.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &mut resp as *mut libc::seccomp_notif_resp,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Installs a copy of `fd` in the caller and answers call `id` with its
    /// number, in one step (`SECCOMP_ADDFD_FLAG_SEND`): the caller gets the
    /// fd exactly when its call returns. `cloexec` becomes the new fd's
    /// close-on-exec flag.
    pub(crate) fn answer_fd(&self, id: u64, fd: BorrowedFd<'_>, cloexec: bool) -> io::Result<i32> {
        let mut addfd = libc::seccomp_notif_addfd {
            id,
            flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
            srcfd: fd.as_raw_fd() as u32,
            newfd: 0,
            newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
        };
        // SAFETY: ADDFD reads one seccomp_notif_addfd from the pointer,
        // which points at `addfd` for the duration of the call.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ADDFD,
                &mut addfd as *mut libc::seccomp_notif_addfd,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ret)
    }

    /// Whether every target is gone (the listener reports `POLLHUP`).
    pub(crate) fn hung_up(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd it is given, which
        // lives across the call; a zero timeout does not block.
        let ret = unsafe { libc::poll(&mut pfd, 1, 0) };
        ret > 0 && pfd.revents & libc::POLLHUP != 0
    }
}
