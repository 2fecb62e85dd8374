//! Creates or joins the namespaces a container process lives in.

use std::path::PathBuf;

use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::{InitError, Result};
use crate::channel::Channel;
use crate::protocol::{Report, Request};

/// The clone flag of a namespace type.
fn flag(kind: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_truncate(kind as i32)
}

/// Whether the spec gives the container a new namespace of `kind` (rather
/// than none, or one joined by path).
pub(crate) fn has_own(spec: &Spec, kind: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|list| {
            list.iter()
                .any(|ns| ns.typ() == kind && ns.path().is_none())
        })
}

/// Joins the namespaces that have a path, then creates the others, as
/// `linux.namespaces` lists them. A new user namespace comes first, so that
/// it owns the others; the runtime writes its id maps while the helper waits.
/// A new PID namespace applies to the next fork.
pub(crate) fn enter(spec: &Spec, channel: &mut Channel) -> Result<()> {
    let listed = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let mut to_join = Vec::new();
    let mut to_create = CloneFlags::empty();
    for ns in &listed {
        match ns.path() {
            Some(path) => to_join.push((ns.typ(), path.clone())),
            None => to_create |= flag(ns.typ()),
        }
    }
    join(&to_join)?;
    if to_create.contains(CloneFlags::CLONE_NEWUSER) {
        to_create.remove(CloneFlags::CLONE_NEWUSER);
        unshare(CloneFlags::CLONE_NEWUSER)
            .map_err(|e| InitError::sys("creating the user namespace", e))?;
        channel
            .send(&Report::UserNamespace)
            .map_err(|e| InitError::io("asking for the id maps", e))?;
        match channel.recv::<Request>() {
            Ok(Some(Request::Continue)) => {}
            Ok(_) => return Err(InitError::msg("the runtime did not write the id maps")),
            Err(e) => return Err(InitError::io("waiting for the id maps", e)),
        }
        // Become the namespace's root, which the maps now name.
        nix::unistd::setresgid(0.into(), 0.into(), 0.into())
            .map_err(|e| InitError::sys("becoming gid 0 in the user namespace", e))?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into())
            .map_err(|e| InitError::sys("becoming uid 0 in the user namespace", e))?;
    }
    if !to_create.is_empty() {
        unshare(to_create)
            .map_err(|e| InitError::sys(format!("creating namespaces {to_create:?}"), e))?;
    }
    Ok(())
}

/// Joins each namespace at its path. The mount namespace goes last, because
/// entering it changes the root the other paths would be resolved in.
pub(crate) fn join(namespaces: &[(LinuxNamespaceType, PathBuf)]) -> Result<()> {
    let mut ordered: Vec<_> = namespaces.iter().collect();
    ordered.sort_by_key(|(kind, _)| match kind {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    });
    for (kind, path) in ordered {
        let file = std::fs::File::open(path).map_err(|e| {
            InitError::io(
                format!("opening the {kind} namespace {}", path.display()),
                e,
            )
        })?;
        setns(&file, flag(*kind)).map_err(|e| {
            InitError::sys(
                format!("joining the {kind} namespace {}", path.display()),
                e,
            )
        })?;
    }
    Ok(())
}

/// Sets the hostname and domain name when the container has its own UTS namespace.
pub(crate) fn set_hostname(spec: &Spec) -> Result<()> {
    let own_uts = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|list| {
            list.iter()
                .any(|ns| ns.typ() == LinuxNamespaceType::Uts && ns.path().is_none())
        });
    if !own_uts {
        return Ok(());
    }
    if let Some(name) = spec.hostname() {
        nix::unistd::sethostname(name)
            .map_err(|e| InitError::sys(format!("setting hostname {name:?}"), e))?;
    }
    if let Some(name) = spec.domainname() {
        let rc = {
            // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
            unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) }
        };
        if rc != 0 {
            return Err(InitError::io(
                format!("setting domainname {name:?}"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}
