//! Checks a spec before anything is created, so that bad input fails with
//! the name of the field and leaves nothing behind.

use std::collections::HashSet;
use std::path::{Component, Path};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use strata_backend::{Error, Result};

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidSpec {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Rejects what the native backend cannot run safely.
pub(crate) fn check(spec: &Spec) -> Result<()> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid("process.args", "must name a program"));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(
            "process.cwd",
            format!("{:?} is not absolute", process.cwd()),
        ));
    }
    if spec.root().is_none() {
        return Err(invalid("root", "missing"));
    }
    let mut seen = HashSet::new();
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for (i, ns) in namespaces.iter().enumerate() {
        let field = format!("linux.namespaces[{i}]");
        if !seen.insert(ns.typ()) {
            return Err(invalid(field, format!("{} is listed twice", ns.typ())));
        }
        if ns.typ() == LinuxNamespaceType::Time {
            return Err(invalid(
                field,
                "time namespaces are not supported by the native backend",
            ));
        }
        if let Some(path) = ns.path() {
            if !path.is_absolute() {
                return Err(invalid(
                    format!("{field}.path"),
                    format!("{path:?} is not absolute"),
                ));
            }
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        check_destination(&format!("mounts[{i}].destination"), m.destination())?;
    }
    let new_user_ns = namespaces
        .iter()
        .any(|ns| ns.typ() == LinuxNamespaceType::User && ns.path().is_none());
    let linux = spec.linux().as_ref();
    for (field, maps) in [
        (
            "linux.uidMappings",
            linux.and_then(|l| l.uid_mappings().as_ref()),
        ),
        (
            "linux.gidMappings",
            linux.and_then(|l| l.gid_mappings().as_ref()),
        ),
    ] {
        let maps = maps.map(Vec::as_slice).unwrap_or_default();
        if new_user_ns && maps.is_empty() {
            return Err(invalid(
                field,
                "a new user namespace needs at least one mapping",
            ));
        }
        if !new_user_ns && !maps.is_empty() {
            return Err(invalid(
                field,
                "mappings need a new user namespace in linux.namespaces",
            ));
        }
        for (i, m) in maps.iter().enumerate() {
            let fits = |start: u32| u64::from(start) + u64::from(m.size()) <= u64::from(u32::MAX);
            if m.size() == 0 || !fits(m.container_id()) || !fits(m.host_id()) {
                return Err(invalid(
                    format!("{field}[{i}]"),
                    format!(
                        "containerID {} hostID {} size {} is empty or overflows 32 bits",
                        m.container_id(),
                        m.host_id(),
                        m.size()
                    ),
                ));
            }
        }
    }
    check_sysctls(spec, &namespaces)?;
    Ok(())
}

/// Allows only sysctls that live in a namespace the container has of its
/// own, so that no sysctl can change the host.
fn check_sysctls(spec: &Spec, namespaces: &[oci_spec::runtime::LinuxNamespace]) -> Result<()> {
    let own = |kind: LinuxNamespaceType| {
        namespaces
            .iter()
            .any(|ns| ns.typ() == kind && ns.path().is_none())
    };
    let Some(sysctls) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    for key in sysctls.keys() {
        let field = format!("linux.sysctl.{key}");
        let namespace = if IPC.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            LinuxNamespaceType::Ipc
        } else if key.starts_with("net.") {
            LinuxNamespaceType::Network
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            LinuxNamespaceType::Uts
        } else {
            return Err(invalid(
                field,
                "not a namespaced sysctl; it would change the host",
            ));
        };
        if !own(namespace) {
            return Err(invalid(
                field,
                format!("needs the container's own {namespace} namespace"),
            ));
        }
        if key.contains('/') || key.split('.').any(|part| part.is_empty() || part == "..") {
            return Err(invalid(field, "malformed key"));
        }
    }
    Ok(())
}

fn check_destination(field: &str, path: &Path) -> Result<()> {
    if !path.is_absolute() {
        return Err(invalid(field, format!("{path:?} is not absolute")));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(field, format!("{path:?} contains \"..\"")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const BASE: &str = r#""ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}"#;

    #[test]
    fn a_minimal_spec_passes() {
        check(&spec(&format!("{{{BASE}}}"))).unwrap();
    }

    #[test]
    fn relative_and_dotdot_destinations_are_refused_by_field() {
        let s = spec(&format!(
            r#"{{{BASE},"mounts":[{{"destination":"/ok"}},{{"destination":"/a/../../etc"}}]}}"#
        ));
        let e = check(&s).unwrap_err().to_string();
        assert!(e.contains("mounts[1].destination"), "{e}");
        let s = spec(&format!(r#"{{{BASE},"mounts":[{{"destination":"tmp"}}]}}"#));
        assert!(check(&s)
            .unwrap_err()
            .to_string()
            .contains("mounts[0].destination"));
    }

    #[test]
    fn duplicate_namespaces_are_refused() {
        let s = spec(&format!(
            r#"{{{BASE},"linux":{{"namespaces":[{{"type":"pid"}},{{"type":"pid"}}]}}}}"#
        ));
        assert!(check(&s)
            .unwrap_err()
            .to_string()
            .contains("linux.namespaces[1]"));
    }

    #[test]
    fn host_sysctls_and_sysctls_without_their_namespace_are_refused() {
        let with = |ns: &str, key: &str| {
            spec(&format!(
                r#"{{{BASE},"linux":{{"namespaces":[{ns}],"sysctl":{{"{key}":"1"}}}}}}"#
            ))
        };
        check(&with(r#"{"type":"network"}"#, "net.ipv4.ip_forward")).unwrap();
        let e = check(&with(r#"{"type":"ipc"}"#, "net.ipv4.ip_forward"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.sysctl.net.ipv4.ip_forward") && e.contains("net"),
            "{e}"
        );
        let e = check(&with(r#"{"type":"network"}"#, "vm.swappiness"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("would change the host"), "{e}");
    }

    #[test]
    fn id_maps_must_fit_and_match_a_user_namespace() {
        let user = |maps: &str| {
            spec(&format!(
                r#"{{{BASE},"linux":{{"namespaces":[{{"type":"user"}}],"uidMappings":[{maps}],"gidMappings":[{{"containerID":0,"hostID":1000,"size":1}}]}}}}"#
            ))
        };
        check(&user(r#"{"containerID":0,"hostID":100000,"size":65536}"#)).unwrap();
        let e = check(&user(r#"{"containerID":0,"hostID":4294967295,"size":2}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.uidMappings[0]") && e.contains("overflows"),
            "{e}"
        );
        let e = check(&user("")).unwrap_err().to_string();
        assert!(e.contains("linux.uidMappings"), "{e}");
    }

    #[test]
    fn empty_args_are_refused() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":[],"user":{"uid":0,"gid":0}}}"#,
        );
        assert!(check(&s).unwrap_err().to_string().contains("process.args"));
    }
}
