//! The network policy, in a network namespace of the target's own with
//! loopback servers the target starts.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::harness::{ensure, policy, supervise, view, Rootfs, Setup};
use super::ops::*;
use crate::{NetAction, NetworkPolicy, Policy};

/// A `sockaddr_in` for `ip:port`.
fn v4(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    // SAFETY: an all-zero sockaddr_in is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as u16;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from(ip).to_be();
    sa
}

/// A `sockaddr_in6` for `[ip]:port`.
fn v6(ip: Ipv6Addr, port: u16) -> libc::sockaddr_in6 {
    // SAFETY: an all-zero sockaddr_in6 is valid.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_port = port.to_be();
    sa.sin6_addr.s6_addr = ip.octets();
    sa
}

fn socket(domain: i32, ty: i32) -> Result<i32, String> {
    // SAFETY: socket takes integers.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", errno()));
    }
    Ok(fd)
}

fn bind<T>(fd: i32, sa: &T) -> Result<(), i32> {
    // SAFETY: bind reads size_of::<T>() bytes of the address.
    let ret = unsafe { libc::bind(fd, (sa as *const T).cast(), std::mem::size_of::<T>() as u32) };
    if ret < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn connect<T>(fd: i32, sa: &T) -> Result<(), i32> {
    // SAFETY: connect reads size_of::<T>() bytes of the address.
    let ret =
        unsafe { libc::connect(fd, (sa as *const T).cast(), std::mem::size_of::<T>() as u32) };
    if ret < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn sendto<T>(fd: i32, data: &[u8], sa: &T) -> Result<usize, i32> {
    // SAFETY: sendto reads the data and the address.
    let ret = unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            0,
            (sa as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret as usize)
    }
}

/// `sendmsg` of `parts` (one iovec each) to `sa`.
fn sendmsg<T>(fd: i32, parts: &[&[u8]], sa: &T) -> Result<usize, i32> {
    let mut iov: Vec<libc::iovec> = parts
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut _,
            iov_len: p.len(),
        })
        .collect();
    // SAFETY: an all-zero msghdr is valid.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_name = (sa as *const T) as *mut _;
    hdr.msg_namelen = std::mem::size_of::<T>() as u32;
    hdr.msg_iov = iov.as_mut_ptr();
    hdr.msg_iovlen = iov.len();
    // SAFETY: sendmsg reads the header and what it points to.
    let ret = unsafe { libc::sendmsg(fd, &hdr, 0) };
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret as usize)
    }
}

fn recv(fd: i32) -> Vec<u8> {
    let mut buf = [0u8; 256];
    // SAFETY: recv writes at most buf.len() bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    buf[..n.max(0) as usize].to_vec()
}

fn listen(fd: i32) -> Result<(), String> {
    // SAFETY: listen takes integers.
    if unsafe { libc::listen(fd, 8) } != 0 {
        return Err(format!("listen: {}", errno()));
    }
    Ok(())
}

fn net_policy() -> Policy {
    Policy {
        network: NetworkPolicy {
            default: NetAction::Deny,
            allow: ["127.0.0.1/32:8080", "0.0.0.0/32:9090", "127.0.0.0/8:8080"]
                .iter()
                .map(|r| r.parse().unwrap())
                .collect(),
            deny: vec!["127.0.0.2/32".parse().unwrap()],
        },
        ..policy()
    }
}

#[test]
fn the_network_policy_decides_connect_bind_and_send() {
    let rootfs = Rootfs::new();
    let setup = Setup {
        netns: true,
        ..Setup::default()
    };
    let lo = Ipv4Addr::LOCALHOST;
    let stats = supervise(&rootfs, net_policy(), view(), setup, || {
        // Servers: TCP on 127.0.0.1:8080 and 0.0.0.0:9090, UDP on 127.0.0.1:8080.
        let tcp = socket(libc::AF_INET, libc::SOCK_STREAM)?;
        ensure!(bind(tcp, &v4(lo, 8080)).is_ok(), "bind 127.0.0.1:8080");
        listen(tcp)?;
        let other = socket(libc::AF_INET, libc::SOCK_STREAM)?;
        ensure!(
            bind(other, &v4(Ipv4Addr::UNSPECIFIED, 9090)).is_ok(),
            "bind 0.0.0.0:9090"
        );
        listen(other)?;
        let refused = socket(libc::AF_INET, libc::SOCK_STREAM)?;
        ensure!(
            bind(refused, &v4(lo, 7070)) == Err(libc::EACCES),
            "bind 127.0.0.1:7070"
        );

        // TCP connect: allowed, refused by default, refused by a deny rule.
        let client = socket(libc::AF_INET, libc::SOCK_STREAM)?;
        ensure!(
            connect(client, &v4(lo, 8080)).is_ok(),
            "connect 127.0.0.1:8080"
        );
        // SAFETY: accept with NULL address arguments.
        let conn = unsafe { libc::accept(tcp, std::ptr::null_mut(), std::ptr::null_mut()) };
        ensure!(conn >= 0, "accept: {}", errno());
        // SAFETY: send reads 5 bytes.
        let sent = unsafe { libc::send(client, b"hello".as_ptr().cast(), 5, 0) };
        ensure!(sent == 5, "send");
        ensure!(
            recv(conn) == b"hello",
            "received over the allowed connection"
        );
        let client2 = socket(libc::AF_INET, libc::SOCK_STREAM)?;
        ensure!(
            connect(client2, &v4(lo, 9090)) == Err(libc::EPERM),
            "connect 127.0.0.1:9090 (default deny)"
        );
        ensure!(
            connect(client2, &v4(Ipv4Addr::new(127, 0, 0, 2), 8080)) == Err(libc::EPERM),
            "deny wins over allow"
        );
        // An IPv4-mapped IPv6 address is judged as IPv4.
        let client6 = socket(libc::AF_INET6, libc::SOCK_STREAM)?;
        ensure!(
            connect(
                client6,
                &v6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped(), 9090)
            ) == Err(libc::EPERM),
            "mapped 127.0.0.1:9090"
        );
        ensure!(
            connect(client6, &v6(lo.to_ipv6_mapped(), 8080)).is_ok(),
            "mapped 127.0.0.1:8080: {}",
            errno()
        );

        // UDP: sendto and sendmsg with an address.
        let server = socket(libc::AF_INET, libc::SOCK_DGRAM)?;
        ensure!(bind(server, &v4(lo, 8080)).is_ok(), "bind udp 8080");
        let udp = socket(libc::AF_INET, libc::SOCK_DGRAM)?;
        ensure!(
            sendto(udp, b"datagram", &v4(lo, 8080)) == Ok(8),
            "sendto allowed"
        );
        ensure!(recv(server) == b"datagram", "udp content");
        ensure!(
            sendto(udp, b"no", &v4(lo, 9090)) == Err(libc::EPERM),
            "sendto refused"
        );
        ensure!(
            sendmsg(udp, &[b"two ", b"parts"], &v4(lo, 8080)) == Ok(9),
            "sendmsg allowed"
        );
        ensure!(recv(server) == b"two parts", "sendmsg content");
        ensure!(
            sendmsg(udp, &[b"no"], &v4(lo, 9090)) == Err(libc::EPERM),
            "sendmsg refused"
        );

        // sendmmsg: the first message is sent, the count says so.
        for (port, want) in [(8080, Ok(1)), (9090, Err(libc::EPERM))] {
            let to = v4(lo, port);
            let parts = [b"first".as_slice(), b"second".as_slice()];
            let mut iovs: Vec<libc::iovec> = parts
                .iter()
                .map(|p| libc::iovec {
                    iov_base: p.as_ptr() as *mut _,
                    iov_len: p.len(),
                })
                .collect();
            // SAFETY: an all-zero mmsghdr is valid.
            let mut msgs: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
            for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
                m.msg_hdr.msg_name = (&to as *const libc::sockaddr_in) as *mut _;
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: sendmmsg reads the two headers and what they point to,
            // and writes their msg_len.
            let ret = unsafe { libc::sendmmsg(udp, msgs.as_mut_ptr(), 2, 0) };
            let got = if ret < 0 { Err(errno()) } else { Ok(ret) };
            ensure!(got == want, "sendmmsg to port {port}: {got:?}");
            if want.is_ok() {
                ensure!(msgs[0].msg_len == 5, "msg_len {}", msgs[0].msg_len);
                ensure!(recv(server) == b"first", "sendmmsg content");
            }
        }

        // Unix sockets are left to the kernel.
        let unix = socket(libc::AF_UNIX, libc::SOCK_STREAM)?;
        // SAFETY: an all-zero sockaddr_un is valid.
        let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        sun.sun_family = libc::AF_UNIX as u16;
        for (d, s) in sun.sun_path.iter_mut().zip(b"/tmp/sock") {
            *d = *s as libc::c_char;
        }
        ensure!(bind(unix, &sun).is_ok(), "bind unix: {}", errno());
        Ok(())
    });
    assert_eq!(stats.get("connect").denied, 3, "{stats}");
    assert_eq!(stats.get("connect").emulated, 2, "{stats}");
    assert_eq!(stats.get("bind").denied, 1, "{stats}");
    assert_eq!(stats.get("bind").continued, 1, "{stats}");
    assert_eq!(
        stats.get("sendto").denied,
        1,
        "send on a connected socket is native: {stats}"
    );
    assert_eq!(stats.get("sendto").emulated, 1, "{stats}");
    assert_eq!(stats.get("sendmsg").emulated, 1, "{stats}");
    assert_eq!(stats.get("sendmsg").denied, 1, "{stats}");
    assert_eq!(stats.get("sendmmsg").emulated, 1, "{stats}");
    assert_eq!(stats.get("sendmmsg").denied, 1, "{stats}");
}
