//! Prepares the calling process to become the user's program: limits,
//! credentials, capabilities, working directory, and the executable lookup.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::os::fd::OwnedFd;

use caps::{CapSet, Capability as Cap, CapsHashSet};
use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimitType, Process};
use strata_seccomp::Filter;

use super::{InitError, Result};

/// The search path used when the process's environment has no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A program ready to be executed: resolved path, argv and environment.
pub(crate) struct Program {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

impl Program {
    /// Replaces the current process with the program; returns only on failure.
    pub fn exec(&self) -> InitError {
        match nix::unistd::execve(&self.path, &self.args, &self.env) {
            Err(e) => InitError::sys(format!("exec {:?}", self.path), e),
            Ok(never) => match never {},
        }
    }
}

/// Applies everything in `process` that must happen before exec, finds the
/// executable, and loads the seccomp filter; returns the program and the
/// filter's notification listener, if it has one. Runs inside the
/// container's namespaces and root.
///
/// Without `noNewPrivileges` the kernel takes a filter only from a process
/// holding CAP_SYS_ADMIN, so the filter is loaded before the credentials
/// change (the profile must then allow those calls, as the usual ones do);
/// with it, the filter is loaded last, so it constrains as little of the
/// runtime's own work as possible.
pub(crate) fn prepare(
    process: &Process,
    seccomp: Option<Filter>,
) -> Result<(Program, Option<OwnedFd>)> {
    set_rlimits(process)?;
    if let Some(umask) = process.user().umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    }
    let caps = process.capabilities().as_ref();
    if let Some(caps) = caps {
        drop_bounding(caps)?;
    }
    let no_new_privileges = process.no_new_privileges().unwrap_or(false);
    let mut seccomp = seccomp;
    let mut listener = None;
    if !no_new_privileges {
        listener = load(seccomp.take())?;
    }
    set_user(process)?;
    if let Some(caps) = caps {
        set_capabilities(caps)?;
    }
    if no_new_privileges {
        // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(InitError::io(
                "setting no_new_privs",
                std::io::Error::last_os_error(),
            ));
        }
    }
    let cwd = process.cwd();
    nix::unistd::chdir(cwd.as_path())
        .map_err(|e| InitError::sys(format!("chdir to cwd {:?}", cwd.display()), e))?;
    let program = program(process)?;
    if no_new_privileges {
        listener = load(seccomp.take())?;
    }
    Ok((program, listener))
}

fn load(filter: Option<Filter>) -> Result<Option<OwnedFd>> {
    match filter {
        Some(filter) => filter
            .load()
            .map_err(|e| InitError::msg(format!("loading the seccomp filter: {e}"))),
        None => Ok(None),
    }
}

fn set_rlimits(process: &Process) -> Result<()> {
    for limit in process.rlimits().iter().flatten() {
        let resource = rlimit_resource(limit.typ());
        setrlimit(resource, limit.soft(), limit.hard()).map_err(|e| {
            InitError::sys(
                format!(
                    "setting rlimit {:?} to {}:{}",
                    limit.typ(),
                    limit.soft(),
                    limit.hard()
                ),
                e,
            )
        })?;
    }
    Ok(())
}

fn rlimit_resource(kind: PosixRlimitType) -> Resource {
    match kind {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Converts an OCI capability set into the kernel's names.
fn cap_set(list: &Option<Capabilities>) -> Result<CapsHashSet> {
    let mut set = HashSet::new();
    for cap in list.iter().flatten() {
        let name = cap.to_string();
        let name = if name.starts_with("CAP_") {
            name
        } else {
            format!("CAP_{name}")
        };
        let parsed: Cap = name.parse().map_err(|_| {
            InitError::msg(format!("process.capabilities: unknown capability {name}"))
        })?;
        set.insert(parsed);
    }
    Ok(set)
}

fn drop_bounding(caps: &LinuxCapabilities) -> Result<()> {
    let keep = cap_set(caps.bounding())?;
    for cap in caps::all() {
        // Capabilities newer than the running kernel are not in its bounding set.
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
                InitError::msg(format!("dropping {cap} from the bounding set: {e}"))
            })?;
        }
    }
    Ok(())
}

fn set_capabilities(caps: &LinuxCapabilities) -> Result<()> {
    // Each capset call must stay valid on its own: the inheritable set is
    // changed while all capabilities are still effective, and the effective
    // set shrinks before the permitted set it has to be a subset of.
    let sets = [
        (CapSet::Inheritable, caps.inheritable()),
        (CapSet::Effective, caps.effective()),
        (CapSet::Permitted, caps.permitted()),
        (CapSet::Ambient, caps.ambient()),
    ];
    for (set, list) in sets {
        let wanted = cap_set(list)?;
        caps::set(None, set, &wanted)
            .map_err(|e| InitError::msg(format!("setting the {set:?} capabilities: {e}")))?;
    }
    Ok(())
}

/// Switches to the spec's user and groups, keeping capabilities across the
/// uid change so that [`set_capabilities`] can set them exactly.
fn set_user(process: &Process) -> Result<()> {
    let user = process.user();
    // SAFETY: prctl with PR_SET_KEEPCAPS takes integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups)
        .map_err(|e| InitError::sys(format!("setting additional gids {groups:?}"), e))?;
    nix::unistd::setgid(Gid::from_raw(user.gid()))
        .map_err(|e| InitError::sys(format!("setting gid {}", user.gid()), e))?;
    nix::unistd::setuid(Uid::from_raw(user.uid()))
        .map_err(|e| InitError::sys(format!("setting uid {}", user.uid()), e))?;
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    Ok(())
}

fn program(process: &Process) -> Result<Program> {
    let args = process.args().clone().unwrap_or_default();
    let first = args
        .first()
        .ok_or_else(|| InitError::msg("process.args must not be empty"))?;
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let search = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let path = look_up(first, search)?;
    let to_c =
        |s: &str| CString::new(s).map_err(|_| InitError::msg(format!("{s:?} contains a NUL byte")));
    Ok(Program {
        path: CString::new(path.as_os_str().as_bytes())
            .map_err(|_| InitError::msg("the executable path contains a NUL byte"))?,
        args: args.iter().map(|a| to_c(a)).collect::<Result<_>>()?,
        env: env.iter().map(|e| to_c(e)).collect::<Result<_>>()?,
    })
}

/// Finds `name` the way a shell does, with the error texts containerd users
/// know from runc.
pub(crate) fn look_up(name: &str, search: &str) -> Result<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return match std::fs::metadata(&path) {
            Ok(m) if is_executable(&m) => Ok(path),
            Ok(_) => Err(InitError::msg(format!("exec: {name:?}: permission denied"))),
            Err(e) => Err(InitError::msg(format!(
                "exec: {name:?}: stat {name}: {}",
                os_text(&e)
            ))),
        };
    }
    for dir in search.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if let Ok(m) = std::fs::metadata(&candidate) {
            if is_executable(&m) {
                return Ok(candidate);
            }
        }
    }
    Err(InitError::msg(format!(
        "exec: {name:?}: executable file not found in $PATH"
    )))
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

/// The OS error's text without Rust's "(os error N)" suffix.
fn os_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_up_searches_the_path_in_order() {
        assert_eq!(
            look_up("sh", "/nonexistent:/bin").unwrap(),
            Path::new("/bin/sh")
        );
    }

    #[test]
    fn a_missing_command_reads_like_runc() {
        let e = look_up("nope", "/bin").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"exec: "nope": executable file not found in $PATH"#
        );
        let e = look_up("/nope", "/bin").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"exec: "/nope": stat /nope: no such file or directory"#
        );
    }

    #[test]
    fn oci_capability_names_convert() {
        let list: Capabilities = [oci_spec::runtime::Capability::NetRaw]
            .into_iter()
            .collect();
        let set = cap_set(&Some(list)).unwrap();
        assert!(set.contains(&Cap::CAP_NET_RAW));
    }
}
