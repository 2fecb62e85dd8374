//! Turns the bare initramfs into a usable system: kernel filesystems (the
//! cgroup2 hierarchy among them), the console as standard streams, the
//! kernel modules the VM's devices need, and the loopback interface the
//! containers of a pod talk over.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MsFlags};

use crate::cgroup::CGROUP_ROOT;
use crate::error::{io, sys, AgentError, Result};

/// Where the initramfs keeps the modules to load (flat, `*.ko`).
const MODULES: &str = "/lib/modules";

/// Mounts `/proc`, `/sys` (with the cgroup2 hierarchy), `/dev` (with
/// `/dev/pts` and `/dev/shm`) and `/run`, then makes the console the
/// agent's standard streams.
pub fn mount_kernel_filesystems() -> Result<()> {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    for (kind, target, flags, data) in [
        ("devtmpfs", "/dev", MsFlags::MS_NOSUID, "mode=0755"),
        ("proc", "/proc", nosuid, ""),
        ("sysfs", "/sys", nosuid, ""),
        ("cgroup2", CGROUP_ROOT, nosuid, "nsdelegate"),
        (
            "devpts",
            "/dev/pts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            "ptmxmode=0666,newinstance",
        ),
        (
            "tmpfs",
            "/dev/shm",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "/run",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=0755",
        ),
    ] {
        std::fs::create_dir_all(target).map_err(io(format!("creating {target}")))?;
        mount(Some(kind), target, Some(kind), flags, Some(data))
            .map_err(sys(format!("mounting {kind} on {target}")))?;
    }
    let console = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
        .map_err(io("opening /dev/console"))?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors; `console` stays open
        // for the duration of the call.
        if unsafe { libc::dup2(console.as_raw_fd(), fd) } < 0 {
            return Err(AgentError::Io {
                context: format!("making the console descriptor {fd}"),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// Brings the VM's loopback interface up (the kernel then gives it
/// 127.0.0.1), so that the containers of a pod reach each other on
/// localhost as they would in a pod's network namespace.
pub fn loopback_up() -> Result<()> {
    let failed = |what: &str| AgentError::Io {
        context: format!("bringing lo up: {what}"),
        source: std::io::Error::last_os_error(),
    };
    // SAFETY: socket(2) has no memory effects.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(failed("socket"));
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data, for which all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(b"lo") {
        *to = *from as libc::c_char;
    }
    // SAFETY: `request` is a valid ifreq naming lo, alive during the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(failed("SIOCGIFFLAGS"));
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: `request` is a valid ifreq naming lo, alive during the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(failed("SIOCSIFFLAGS"));
    }
    Ok(())
}

/// A module file and what it needs loaded first.
struct Module {
    file: std::path::PathBuf,
    depends: Vec<String>,
}

/// Loads every module in the initramfs, each after the modules it depends on
/// (from the `depends=` field of its `.modinfo`), with the parameters that
/// the kernel command line gives it (`name.param=value`).
pub fn load_modules() -> Result<()> {
    let mut pending = BTreeMap::new();
    let entries = match std::fs::read_dir(MODULES) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("listing {MODULES}"))(e)),
    };
    for entry in entries {
        let file = entry.map_err(io(format!("listing {MODULES}")))?.path();
        if file.extension().is_some_and(|e| e == "ko") {
            let bytes = std::fs::read(&file).map_err(io(format!("reading {}", file.display())))?;
            let name = modinfo(&bytes, "name").ok_or_else(|| {
                AgentError::Refused(format!("{}: no name in .modinfo", file.display()))
            })?;
            let depends = modinfo(&bytes, "depends")
                .map(|d| {
                    d.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            pending.insert(name.to_owned(), Module { file, depends });
        }
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(io("reading /proc/cmdline"))?;
    let mut loaded: Vec<String> = Vec::new();
    while !pending.is_empty() {
        let ready: Vec<String> = pending
            .iter()
            .filter(|(_, m)| {
                m.depends
                    .iter()
                    .all(|d| loaded.contains(d) || !pending.contains_key(d))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if ready.is_empty() {
            let names: Vec<&String> = pending.keys().collect();
            return Err(AgentError::Refused(format!(
                "module dependency cycle among {names:?}"
            )));
        }
        for name in ready {
            let module = pending.remove(&name).expect("listed above");
            load(&name, &module.file, &cmdline)?;
            loaded.push(name);
        }
    }
    Ok(())
}

fn load(name: &str, file: &Path, cmdline: &str) -> Result<()> {
    let prefix = format!("{name}.");
    let params: Vec<&str> = cmdline
        .split_whitespace()
        .filter_map(|arg| arg.strip_prefix(prefix.as_str()))
        .collect();
    let params = CString::new(params.join(" "))
        .map_err(|_| AgentError::Refused(format!("parameters of {name} contain NUL")))?;
    let fd = std::fs::File::open(file).map_err(io(format!("opening {}", file.display())))?;
    match finit_module(&fd, &params, ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(sys(format!("loading module {}", file.display()))(e)),
    }
}

/// The value of `key` in a module's `.modinfo` section (`key=value\0` entries).
fn modinfo<'a>(bytes: &'a [u8], key: &str) -> Option<&'a str> {
    let needle = format!("{key}=");
    bytes
        .split(|&b| b == 0)
        .filter_map(|field| std::str::from_utf8(field).ok())
        .find_map(|field| field.strip_prefix(needle.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_fields_are_found_between_nuls() {
        let bytes = b"\x7fELF\0license=GPL\0depends=virtio,virtio_ring\0name=virtio_blk\0";
        assert_eq!(modinfo(bytes, "name"), Some("virtio_blk"));
        assert_eq!(modinfo(bytes, "depends"), Some("virtio,virtio_ring"));
        assert_eq!(modinfo(bytes, "vermagic"), None);
    }
}
