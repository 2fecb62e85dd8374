//! The network policy: `connect`, `bind`, `sendto` with an address,
//! `sendmsg` and `sendmmsg` on IPv4 and IPv6 sockets are judged by
//! destination (or, for `bind`, local) address and port, and performed by
//! the supervisor on the caller's own socket (fetched with `pidfd_getfd`),
//! with the caller's credentials, using the address it read: what was
//! judged is what runs.
//!
//! Where the kernel runs the call itself (CONTINUE):
//!
//! * Sockets of other families. `AF_UNIX` addresses are paths (or abstract
//!   names) that the file policy and the masking mounts cover; performing
//!   the call in the supervisor would also show the peer the supervisor's
//!   credentials (`SO_PEERCRED`, `SCM_CREDENTIALS`) instead of the
//!   caller's. Netlink and packet sockets carry no IP destination (packet
//!   sockets need `CAP_NET_RAW`, which an interpose class should drop).
//! * `sendto` and `sendmsg` on stream sockets without `MSG_FASTOPEN`: the
//!   kernel ignores their address, so the connection's peer (judged at
//!   `connect`) is where the data goes.
//!
//! The socket's family and type are read from the socket the supervisor
//! fetched; a thread of the caller that, in the instant between that check
//! and the kernel's re-run, replaced the fd with an IPv4 socket and rewrote
//! the address would get one unjudged call through. Closing that needs the
//! network namespace's own filtering (the runtime's business).
//!
//! `sendmsg` data is copied into the supervisor, at most [`MAX_SEND`]
//! bytes (a datagram larger than that cannot be sent anyway:
//! `EMSGSIZE`). Control messages are passed on as they are: on IP sockets
//! the kernel accepts only IP-level ones and the `SOL_SOCKET` ones that
//! carry no fds or credentials, and checks them against the caller's
//! capabilities, which the supervisor has taken. `sendmmsg` sends the
//! first message and returns 1, which the call's contract allows (callers
//! loop over the rest).
//!
//! `listen` is not mediated: on an unbound socket it binds the any address
//! and an ephemeral port, which names no destination; what the socket
//! accepts is the concern of whoever connects to it.
//!
//! A blocking call blocks a worker, not the others: the supervisor starts
//! another worker when calls stop completing. A signal to the caller waits
//! until the supervisor has answered (`SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`),
//! so a send the supervisor performed is never made again by a restarted
//! call; the other side of that is that a blocking connect is not cut short
//! by a non-fatal signal.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use crate::calls::Call;
use crate::handlers::{Ctx, Reply};
use crate::memory;
use crate::notify::Answer;
use crate::policy::NetAction;

/// The most data one emulated `sendmsg` or `sendto` copies.
pub(crate) const MAX_SEND: usize = 1 << 20;

/// The largest socket address.
const MAX_ADDR: usize = std::mem::size_of::<libc::sockaddr_storage>();

/// The most iovecs a message may have (`UIO_MAXIOV`).
const MAX_IOV: usize = 1024;

/// The largest control buffer copied.
const MAX_CONTROL: usize = 64 * 1024;

/// A message to send, copied out of the caller.
struct Message {
    addr: Option<Vec<u8>>,
    data: Vec<u8>,
    control: Vec<u8>,
}

/// Connect, bind and the sends.
pub(crate) fn handle(ctx: &Ctx<'_>) -> Reply {
    match handle_inner(ctx) {
        Ok(reply) => reply,
        Err(answer) => answer.into(),
    }
}

fn handle_inner(ctx: &Ctx<'_>) -> Result<Reply, Answer> {
    let thread = match ctx.thread()? {
        Some(thread) => thread,
        None => return Ok(Reply::Gone),
    };
    let sock = thread
        .fetch_fd(ctx.int_arg(0))
        .map_err(|e| Answer::Error(e.raw_os_error().unwrap_or(libc::EBADF)))?;
    let domain = sockopt(&sock, libc::SO_DOMAIN)?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Ok(Reply::Continue);
    }
    let stream = sockopt(&sock, libc::SO_TYPE)? == libc::SOCK_STREAM;
    let tid = ctx.tid();
    match ctx.call {
        Call::Connect | Call::Bind => {
            let addr = read_addr(tid, ctx.arg(1), ctx.arg(2))?;
            if let Some(reply) = judge(ctx, &addr) {
                return Ok(reply);
            }
            if !ctx.still_pending() {
                return Ok(Reply::Gone);
            }
            let op = if ctx.call == Call::Connect {
                libc::connect
            } else {
                libc::bind
            };
            let result = ctx.own.act_as(&thread.creds, || {
                // SAFETY: the address buffer lives across the call and its
                // length is passed with it.
                let ret = unsafe { op(sock.as_raw_fd(), addr.as_ptr().cast(), addr.len() as u32) };
                if ret != 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(0)
                }
            });
            Ok(finish(ctx, &thread.pidfd, result, 0))
        }
        Call::Sendto => {
            let flags = ctx.int_arg(3);
            if stream && flags & libc::MSG_FASTOPEN == 0 {
                return Ok(Reply::Continue);
            }
            let addr = read_addr(tid, ctx.arg(4), ctx.arg(5))?;
            if let Some(reply) = judge(ctx, &addr) {
                return Ok(reply);
            }
            let len = (ctx.arg(2) as usize).min(MAX_SEND);
            let mut data = vec![0u8; len];
            memory::read(tid, ctx.arg(1), &mut data).map_err(|_| Answer::Error(libc::EFAULT))?;
            let msg = Message {
                addr: Some(addr),
                data,
                control: Vec::new(),
            };
            send(ctx, &thread, &sock, &msg, flags)
        }
        Call::Sendmsg => {
            let flags = ctx.int_arg(2);
            if stream && flags & libc::MSG_FASTOPEN == 0 {
                return Ok(Reply::Continue);
            }
            let msg = read_message(tid, ctx.arg(1))?;
            if let Some(addr) = &msg.addr {
                if let Some(reply) = judge(ctx, addr) {
                    return Ok(reply);
                }
            }
            send(ctx, &thread, &sock, &msg, flags)
        }
        _ => {
            let flags = ctx.int_arg(3);
            if stream && flags & libc::MSG_FASTOPEN == 0 {
                return Ok(Reply::Continue);
            }
            if ctx.arg(2) == 0 {
                return Ok(Answer::Value(0).into());
            }
            let msg = read_message(tid, ctx.arg(1))?;
            if let Some(addr) = &msg.addr {
                if let Some(reply) = judge(ctx, addr) {
                    return Ok(reply);
                }
            }
            let reply = send(ctx, &thread, &sock, &msg, flags)?;
            let Reply::Emulated(Answer::Value(sent)) = reply else {
                return Ok(reply);
            };
            // struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; }
            let len_at = ctx.arg(1) + std::mem::size_of::<libc::msghdr>() as u64;
            memory::write_value(tid, len_at, &(sent as u32))
                .map_err(|_| Answer::Error(libc::EFAULT))?;
            Ok(Answer::Value(1).into())
        }
    }
}

/// Sends `msg` on the caller's socket with the caller's identity.
fn send(
    ctx: &Ctx<'_>,
    thread: &crate::target::Thread,
    sock: &OwnedFd,
    msg: &Message,
    flags: i32,
) -> Result<Reply, Answer> {
    if !ctx.still_pending() {
        return Ok(Reply::Gone);
    }
    let mut iov = libc::iovec {
        iov_base: msg.data.as_ptr() as *mut libc::c_void,
        iov_len: msg.data.len(),
    };
    // SAFETY: an all-zero msghdr is a valid value of the plain struct.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some(addr) = &msg.addr {
        hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
        hdr.msg_namelen = addr.len() as u32;
    }
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if !msg.control.is_empty() {
        hdr.msg_control = msg.control.as_ptr() as *mut libc::c_void;
        hdr.msg_controllen = msg.control.len();
    }
    let result = ctx.own.act_as(&thread.creds, || {
        // SAFETY: the header points at the iovec, address and control
        // buffers above, which all live across the call; sendmsg only
        // reads them. MSG_NOSIGNAL keeps SIGPIPE away from the supervisor.
        let ret = unsafe { libc::sendmsg(sock.as_raw_fd(), &hdr, flags | libc::MSG_NOSIGNAL) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret as i64)
        }
    });
    Ok(finish(ctx, &thread.pidfd, result, flags))
}

/// The reply to a performed call; a send that hit a closed connection
/// raises `SIGPIPE` in the caller unless it asked for `MSG_NOSIGNAL`, as
/// the kernel would.
fn finish(
    ctx: &Ctx<'_>,
    pidfd: &OwnedFd,
    result: io::Result<io::Result<i64>>,
    flags: i32,
) -> Reply {
    match result {
        Ok(Ok(value)) => Answer::Value(value).into(),
        Ok(Err(e)) => {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            if errno == libc::EPIPE && flags & libc::MSG_NOSIGNAL == 0 && ctx.call != Call::Connect
            {
                // SAFETY: pidfd_send_signal takes an fd and integers; a
                // NULL info is allowed.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        pidfd.as_raw_fd(),
                        libc::SIGPIPE,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
            }
            Answer::Error(errno).into()
        }
        Err(e) => {
            log::error!("taking the identity of thread {}: {e}", ctx.tid());
            Answer::Error(libc::EPERM).into()
        }
    }
}

/// A refusal if the policy denies the IP address in `addr`.
fn judge(ctx: &Ctx<'_>, addr: &[u8]) -> Option<Reply> {
    let (ip, port) = inet(addr)?;
    if ctx.shared.policy.network.decide(ip, port) == NetAction::Allow {
        return None;
    }
    let errno = if ctx.call == Call::Bind {
        libc::EACCES
    } else {
        libc::EPERM
    };
    let what = match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    Some(Reply::Denied { errno, what })
}

/// The IP address and port of an `AF_INET` or `AF_INET6` socket address.
fn inet(addr: &[u8]) -> Option<(IpAddr, u16)> {
    let family = u16::from_ne_bytes([*addr.first()?, *addr.get(1)?]);
    let port = u16::from_be_bytes([*addr.get(2)?, *addr.get(3)?]);
    match i32::from(family) {
        libc::AF_INET if addr.len() >= 8 => {
            let ip: [u8; 4] = addr[4..8].try_into().ok()?;
            Some((IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        libc::AF_INET6 if addr.len() >= 24 => {
            let ip: [u8; 16] = addr[8..24].try_into().ok()?;
            Some((IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Reads a socket address of `len` bytes at `at`.
fn read_addr(tid: i32, at: u64, len: u64) -> Result<Vec<u8>, Answer> {
    let len = usize::try_from(len).map_err(|_| Answer::Error(libc::EINVAL))?;
    if len > MAX_ADDR {
        return Err(Answer::Error(libc::EINVAL));
    }
    let mut addr = vec![0u8; len];
    memory::read(tid, at, &mut addr).map_err(|_| Answer::Error(libc::EFAULT))?;
    Ok(addr)
}

/// Copies the `struct msghdr` at `at` and what it points to.
fn read_message(tid: i32, at: u64) -> Result<Message, Answer> {
    let efault = |_| Answer::Error(libc::EFAULT);
    let mut raw = [0u8; std::mem::size_of::<libc::msghdr>()];
    memory::read(tid, at, &mut raw).map_err(efault)?;
    // SAFETY: the buffer holds exactly one msghdr, a plain struct of
    // integers and pointers that are only used as addresses in the caller.
    let hdr: libc::msghdr = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast()) };
    let addr = if hdr.msg_name.is_null() || hdr.msg_namelen == 0 {
        None
    } else {
        Some(read_addr(
            tid,
            hdr.msg_name as u64,
            u64::from(hdr.msg_namelen),
        )?)
    };
    if hdr.msg_iovlen > MAX_IOV {
        return Err(Answer::Error(libc::EMSGSIZE));
    }
    let mut iovs = vec![0u8; hdr.msg_iovlen * std::mem::size_of::<libc::iovec>()];
    memory::read(tid, hdr.msg_iov as u64, &mut iovs).map_err(efault)?;
    let mut data = Vec::new();
    for chunk in iovs.chunks_exact(std::mem::size_of::<libc::iovec>()) {
        // SAFETY: the chunk holds exactly one iovec, read from the caller.
        let iov: libc::iovec = unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) };
        if data.len() + iov.iov_len > MAX_SEND {
            return Err(Answer::Error(libc::EMSGSIZE));
        }
        let start = data.len();
        data.resize(start + iov.iov_len, 0);
        memory::read(tid, iov.iov_base as u64, &mut data[start..]).map_err(efault)?;
    }
    let mut control = Vec::new();
    if !hdr.msg_control.is_null() && hdr.msg_controllen > 0 {
        if hdr.msg_controllen > MAX_CONTROL {
            return Err(Answer::Error(libc::ENOBUFS));
        }
        control.resize(hdr.msg_controllen, 0);
        memory::read(tid, hdr.msg_control as u64, &mut control).map_err(efault)?;
    }
    Ok(Message {
        addr,
        data,
        control,
    })
}

/// An integer socket option at `SOL_SOCKET`.
fn sockopt(sock: &OwnedFd, opt: i32) -> Result<i32, Answer> {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let ret = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::ENOTSOCK);
        return Err(Answer::Error(errno));
    }
    Ok(value)
}
