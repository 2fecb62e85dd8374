//! The first code of every container process in the guest: a fresh,
//! single-threaded copy of the agent that the spawner starts as
//! `/init enter` inside the container's PID namespace and cgroup. It enters
//! the container's mount namespace (the init makes it), mounts the
//! container's `/proc`, changes root into the container's root filesystem
//! and hands over to the native class's container code
//! ([`strata_native::become_process`]) for the spec's masked and read-only
//! paths, limits, capabilities, user and seccomp profile.
//!
//! The request arrives as JSON on descriptor [`REQUEST_FD`]; a failure is
//! written to descriptor [`STATUS_FD`], which closes unwritten when the
//! program is executed, so the spawner learns either way.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};

use crate::rootfs::ProcMount;

/// The argument that makes the agent binary this helper.
pub const ENTER_ARG: &str = "enter";

/// Where the helper finds its request.
pub const REQUEST_FD: RawFd = 3;

/// Where the helper reports a failure.
pub const STATUS_FD: RawFd = 4;

/// What the helper is to become.
#[derive(Serialize, Deserialize)]
pub struct EnterRequest {
    /// The container's spec (its mounts and hooks left out: the agent made
    /// the mounts, and hooks run on the host).
    pub spec: Spec,
    /// The process to become.
    pub process: Process,
    /// The container's root filesystem, a path in the agent's namespace.
    pub root: PathBuf,
    /// The `proc` mounts to make, for the container's init.
    pub proc_mounts: Vec<ProcMount>,
    /// `None` for the container's init, which makes the mount namespace;
    /// otherwise the guest pid of the init, whose namespace it joins.
    pub init: Option<i32>,
}

/// Runs the helper; never returns.
pub fn main() -> ! {
    // SAFETY: the spawner placed the status pipe here before exec; nothing
    // else in this fresh process owns it.
    let mut status = unsafe { File::from_raw_fd(STATUS_FD) };
    // SAFETY: F_SETFD on a descriptor this process owns; no memory involved.
    unsafe { libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let error = match run() {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = status.write_all(error.as_bytes());
    std::process::exit(127)
}

/// Everything up to the exec of the program; returns only its failure.
fn run() -> Result<std::convert::Infallible, String> {
    // SAFETY: the spawner placed the request here before exec; nothing else
    // in this fresh process owns it, and it is closed once read.
    let mut input = unsafe { File::from_raw_fd(REQUEST_FD) };
    let mut text = Vec::new();
    input
        .read_to_end(&mut text)
        .map_err(|e| format!("reading the request: {e}"))?;
    drop(input);
    let request: EnterRequest =
        serde_json::from_slice(&text).map_err(|e| format!("parsing the request: {e}"))?;
    match request.init {
        None => make_namespace(&request.proc_mounts)?,
        Some(init) => join_namespace(init)?,
    }
    change_root(&request.root)?;
    Err(
        strata_native::become_process(&request.spec, &request.process, request.init.is_none())
            .to_string(),
    )
}

/// Makes the container's mount namespace, in which nothing propagates back
/// to the agent's, and mounts its `/proc`s, which show the container's PID
/// namespace because this process is in it.
fn make_namespace(proc_mounts: &[ProcMount]) -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("creating a mount namespace: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making the mounts private: {e}"))?;
    for m in proc_mounts {
        mount(
            Some("proc"),
            &m.target,
            Some("proc"),
            MsFlags::from_bits_truncate(m.flags),
            None::<&str>,
        )
        .map_err(|e| format!("mounting proc on {}: {e}", m.target.display()))?;
    }
    Ok(())
}

/// Joins the mount namespace of the container's init, guest pid `init`.
fn join_namespace(init: i32) -> Result<(), String> {
    let path = format!("/proc/{init}/ns/mnt");
    let namespace = File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
    setns(namespace, CloneFlags::CLONE_NEWNS).map_err(|e| format!("joining {path}: {e}"))
}

/// Makes `root` the process's root directory. The guest boots from an
/// initramfs, which `pivot_root` cannot leave, so this is a `chroot` in the
/// container's own mount namespace.
fn change_root(root: &Path) -> Result<(), String> {
    nix::unistd::chroot(root).map_err(|e| format!("chroot {}: {e}", root.display()))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir / in the container: {e}"))
}
