//! A container's root filesystem in the guest: one of the host's ext4 disk
//! images, found by its serial, with the guest's `/dev` and the spec's
//! kernel filesystems mounted in it.

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};
use strata_agent::protocol::agent::Mount;

use crate::error::{io, sys, AgentError, Result};

/// Where the agent mounts the containers' root filesystems, each in the
/// directory named by its container id.
const ROOTS: &str = "/run/containers";

/// How long the disk may take to appear after its driver was loaded.
const DISK_TIMEOUT: Duration = Duration::from_secs(10);

/// The PATH used to find a program when the process's environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A `proc` mount that the container's init makes itself, since a proc
/// filesystem shows the PID namespace of whoever mounts it.
#[derive(Clone, Serialize, Deserialize)]
pub struct ProcMount {
    /// The mount point, a path in the guest.
    pub target: PathBuf,
    /// The mount flags' bits.
    pub flags: libc::c_ulong,
}

/// Where the root filesystem of `container` is mounted.
pub fn root_of(container: &str) -> Result<PathBuf> {
    if container.is_empty() || container.contains('/') || container.starts_with('.') {
        return Err(AgentError::Refused(format!(
            "container id {container:?} is not a file name"
        )));
    }
    Ok(Path::new(ROOTS).join(container))
}

/// The device node of the disk whose serial is `serial`, once it exists.
fn disk(serial: &str) -> Result<PathBuf> {
    let deadline = Instant::now() + DISK_TIMEOUT;
    loop {
        for entry in std::fs::read_dir("/sys/block")
            .map_err(io("listing /sys/block"))?
            .flatten()
        {
            let found = std::fs::read_to_string(entry.path().join("serial")).unwrap_or_default();
            let device = Path::new("/dev").join(entry.file_name());
            if found.trim() == serial && device.exists() {
                return Ok(device);
            }
        }
        if Instant::now() >= deadline {
            return Err(AgentError::Refused(format!(
                "no disk with serial {serial:?} appeared in {DISK_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Mounts the disk with serial `serial` at `root`, the guest's `/dev` into
/// it, then `mounts` except `proc` ones, which are returned for the init
/// process; then makes the root read-only if asked.
pub fn prepare(
    root: &Path,
    serial: &str,
    readonly: bool,
    mounts: &[Mount],
) -> Result<Vec<ProcMount>> {
    // The host rewrites a spare disk's image between the containers that
    // use it: the kernel dropped the disk's cached blocks when the last
    // user closed it (the previous unmount), so nothing stale is read.
    let device = disk(serial)?;
    std::fs::create_dir_all(root).map_err(io(format!("creating {}", root.display())))?;
    mount(
        Some(&device),
        root,
        Some("ext4"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(sys(format!(
        "mounting {} on {}",
        device.display(),
        root.display()
    )))?;
    let made = mount_inside(root, mounts);
    if made.is_err() {
        let _ = remove(root);
    }
    let proc_mounts = made?;
    if readonly {
        mount(
            None::<&str>,
            root,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(sys(format!("making {} read-only", root.display())))?;
    }
    Ok(proc_mounts)
}

/// Unmounts `root` with everything mounted under it, and removes the mount
/// point; the disk's filesystem is written back first.
pub fn remove(root: &Path) -> Result<()> {
    nix::unistd::sync();
    match nix::mount::umount2(root, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(sys(format!("unmounting {}", root.display()))(e)),
    }
    match std::fs::remove_dir(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("removing {}", root.display()))(e)),
    }
}

/// Mounts the guest's `/dev` and `mounts` inside `root`.
fn mount_inside(root: &Path, mounts: &[Mount]) -> Result<Vec<ProcMount>> {
    let dev = target(root, "/dev")?;
    mount(
        Some("/dev"),
        &dev,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(format!("binding /dev on {}", dev.display())))?;
    let mut proc_mounts = Vec::new();
    for m in mounts {
        let (flags, data) = options(&m.options);
        let at = target(root, &m.destination)?;
        if m.kind == "proc" {
            proc_mounts.push(ProcMount {
                target: at,
                flags: flags.bits(),
            });
            continue;
        }
        mount(
            Some(m.source.as_str()),
            &at,
            Some(m.kind.as_str()),
            flags,
            Some(data.as_str()),
        )
        .map_err(sys(format!("mounting {} on {}", m.kind, m.destination)))?;
    }
    Ok(proc_mounts)
}

/// Creates the mount point `destination` inside the root filesystem `root`.
fn target(root: &Path, destination: &str) -> Result<PathBuf> {
    let path = root.join(destination.trim_start_matches('/'));
    std::fs::create_dir_all(&path)
        .map_err(io(format!("creating the mount point {destination}")))?;
    Ok(path)
}

/// Splits OCI mount options into mount flags and the filesystem's data string.
fn options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        match option.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags.remove(MsFlags::MS_RDONLY),
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "suid" | "dev" | "exec" | "atime" => {}
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// Finds `program` as the container would: inside the root filesystem
/// `root` (symlinks resolved there, never into the guest), on `PATH` from
/// `env` when it has no slash. Returns the path as the container sees it.
pub fn find_executable(root: &Path, program: &str, cwd: &str, env: &[String]) -> Result<String> {
    let root = std::fs::File::open(root).map_err(io(format!("opening {}", root.display())))?;
    let candidates: Vec<String> = if program.contains('/') {
        let absolute = if program.starts_with('/') {
            program.to_owned()
        } else {
            format!("{}/{program}", cwd.trim_end_matches('/'))
        };
        vec![absolute]
    } else {
        let path = env
            .iter()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| format!("{}/{program}", dir.trim_end_matches('/')))
            .collect()
    };
    for candidate in &candidates {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT);
        let Ok(fd) = openat2(root.as_fd(), candidate.as_str(), how) else {
            continue;
        };
        let file = std::fs::File::from(fd);
        let Ok(meta) = file.metadata() else { continue };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return Ok(candidate.clone());
        }
    }
    Err(AgentError::Refused(if program.contains('/') {
        format!("exec: {program:?}: no such executable file")
    } else {
        format!("exec: {program:?}: executable file not found in $PATH")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["nosuid", "strictatime", "mode=755", "size=65536k", "ro"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data) = options(&opts);
        assert_eq!(
            flags,
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME | MsFlags::MS_RDONLY
        );
        assert_eq!(data, "mode=755,size=65536k");
    }
}
