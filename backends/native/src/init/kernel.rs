//! Per-container kernel settings: sysctls, the OOM score and the personality.

use oci_spec::runtime::{LinuxPersonalityDomain, Process, Spec};

use super::{InitError, Result};

/// Writes `linux.sysctl` under `/proc/sys`, inside the container's
/// namespaces (validated beforehand to be namespaced ones).
pub(crate) fn set_sysctls(spec: &Spec) -> Result<()> {
    let Some(sysctls) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in sysctls {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value)
            .map_err(|e| InitError::io(format!("linux.sysctl: setting {key} to {value:?}"), e))?;
    }
    Ok(())
}

/// Applies `process.oomScoreAdj`. Lowering the score needs CAP_SYS_RESOURCE,
/// which the error says when that is what failed.
pub(crate) fn set_oom_score_adj(process: &Process) -> Result<()> {
    let Some(score) = process.oom_score_adj() else {
        return Ok(());
    };
    std::fs::write("/proc/self/oom_score_adj", score.to_string()).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (lowering the OOM score needs CAP_SYS_RESOURCE, which the runtime does not have here)"
        } else {
            ""
        };
        InitError::io(format!("process.oomScoreAdj: setting {score}{hint}"), e)
    })
}

/// Applies `linux.personality`.
pub(crate) fn set_personality(spec: &Spec) -> Result<()> {
    let Some(personality) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) else {
        return Ok(());
    };
    let persona: libc::c_ulong = match personality.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality(2) takes a plain integer and changes only this process.
    if unsafe { libc::personality(persona) } == -1 {
        return Err(InitError::io(
            format!("linux.personality: setting {:?}", personality.domain()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Brings up `lo` in a new network namespace, where it starts down, so that
/// the container can reach its own loopback addresses.
pub(crate) fn bring_up_loopback() -> Result<()> {
    use std::os::fd::AsRawFd;
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| InitError::sys("opening a socket to configure lo", e))?;
    // SAFETY: ifreq is a plain C struct for which all-zero is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the flags of the named interface into `request`,
    // which is valid and outlives the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(InitError::io(
            "reading the flags of lo",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the kernel just filled the flags member of the union.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `request`, which is valid and outlives the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(InitError::io(
            "bringing lo up",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
