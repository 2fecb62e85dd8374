//! Checks a spec before anything is created, so that bad input fails with
//! the name of the field and leaves nothing behind.

use std::collections::HashSet;
use std::path::{Component, Path};

use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process, Spec};
use strata_backend::{Error, Result};

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidSpec {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Rejects what the native backend cannot run safely, naming the field.
pub fn check(spec: &Spec) -> Result<()> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing"))?;
    check_process(process)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing"))?;
    if root.path().is_relative() && root.path().components().any(|c| c == Component::ParentDir) {
        return Err(invalid(
            "root.path",
            format!("{:?} climbs out of the bundle", root.path()),
        ));
    }
    if let Some(resources) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        check_resources(resources)?;
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

/// Rejects a process the kernel would refuse only later, at exec or setrlimit,
/// when the failure could no longer be reported as the spec's fault.
pub fn check_process(process: &Process) -> Result<()> {
    let args = process.args().as_deref().unwrap_or_default();
    if args.is_empty() {
        return Err(invalid("process.args", "must name a program"));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(
            "process.cwd",
            format!("{:?} is not absolute", process.cwd()),
        ));
    }
    let env = process.env().as_deref().unwrap_or_default();
    if let Some((i, long)) = args
        .iter()
        .chain(env)
        .enumerate()
        .find(|(_, s)| s.len() >= MAX_ARG_STRLEN)
    {
        let field = if i < args.len() {
            format!("process.args[{i}]")
        } else {
            format!("process.env[{}]", i - args.len())
        };
        return Err(invalid(
            field,
            format!(
                "{} bytes long; exec takes strings of at most {} bytes",
                long.len(),
                MAX_ARG_STRLEN - 1
            ),
        ));
    }
    // execve counts each string with its terminating NUL and its pointer.
    let size: usize = args
        .iter()
        .chain(env)
        .map(|s| s.len() + 1 + std::mem::size_of::<usize>())
        .sum();
    let limit = exec_size_limit();
    if size > limit {
        return Err(invalid(
            "process.args",
            format!("the arguments and environment take {size} bytes; exec allows at most {limit}"),
        ));
    }
    for (i, limit) in process.rlimits().iter().flatten().enumerate() {
        if limit.soft() > limit.hard() {
            return Err(invalid(
                format!("process.rlimits[{i}]"),
                format!(
                    "{:?}: soft limit {} exceeds hard limit {}",
                    limit.typ(),
                    limit.soft(),
                    limit.hard()
                ),
            ));
        }
    }
    Ok(())
}

/// The longest single argument or environment string execve takes, with
/// its NUL: 32 pages.
const MAX_ARG_STRLEN: usize = 32 * 4096;

/// What execve accepts for arguments and environment together: a quarter
/// of the stack limit, as the kernel computes it (at least 128 KiB).
fn exec_size_limit() -> usize {
    let stack = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK)
        .map(|(soft, _)| soft)
        .unwrap_or(8 << 20);
    let quarter = if stack == libc::RLIM_INFINITY {
        usize::MAX / 4
    } else {
        (stack / 4) as usize
    };
    quarter.max(128 << 10)
}

/// Rejects limits the kernel would refuse, naming the field, instead of
/// failing halfway through applying them.
pub(crate) fn check_resources(resources: &LinuxResources) -> Result<()> {
    if let Some(memory) = resources.memory() {
        for (field, value) in [
            ("limit", memory.limit()),
            ("reservation", memory.reservation()),
            ("swap", memory.swap()),
        ] {
            if let Some(v) = value {
                if v < -1 {
                    return Err(invalid(
                        format!("linux.resources.memory.{field}"),
                        format!("{v} is negative (only -1, unlimited, is allowed)"),
                    ));
                }
            }
        }
        if let (Some(limit), Some(swap)) = (memory.limit(), memory.swap()) {
            if limit > 0 && swap > 0 && swap < limit {
                return Err(invalid(
                    "linux.resources.memory.swap",
                    format!("memory+swap {swap} is below the memory limit {limit}"),
                ));
            }
        }
    }
    if let Some(cpu) = resources.cpu() {
        if let Some(period) = cpu.period() {
            if !(1_000..=1_000_000).contains(&period) {
                return Err(invalid(
                    "linux.resources.cpu.period",
                    format!("{period} is outside 1000..=1000000 microseconds"),
                ));
            }
        }
        if let Some(quota) = cpu.quota() {
            if quota != -1 && !(1_000..=i64::MAX / 2).contains(&quota) {
                return Err(invalid(
                    "linux.resources.cpu.quota",
                    format!("{quota} must be -1 (unlimited) or at least 1000 microseconds"),
                ));
            }
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
    fn absurd_values_are_refused_by_field() {
        let with = |extra: &str| spec(&format!(r#"{{{BASE},{extra}}}"#));
        let cases = [
            (
                r#""linux":{"resources":{"memory":{"limit":-5}}}"#,
                "linux.resources.memory.limit",
            ),
            (
                r#""linux":{"resources":{"memory":{"limit":1000000,"swap":10}}}"#,
                "linux.resources.memory.swap",
            ),
            (
                r#""linux":{"resources":{"cpu":{"period":10}}}"#,
                "linux.resources.cpu.period",
            ),
            (
                r#""linux":{"resources":{"cpu":{"quota":5}}}"#,
                "linux.resources.cpu.quota",
            ),
        ];
        for (extra, field) in cases {
            let e = check(&with(extra)).unwrap_err().to_string();
            assert!(e.contains(field), "{extra}: {e}");
        }
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"../../etc"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}}"#,
        );
        assert!(check(&s).unwrap_err().to_string().contains("root.path"));
    }

    #[test]
    fn a_huge_argv_and_inverted_rlimits_are_refused() {
        let big = "x".repeat(1 << 20);
        let s = spec(&format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"process":{{"cwd":"/","args":["sh","{big}"],"user":{{"uid":0,"gid":0}}}}}}"#
        ));
        let e = check(&s).unwrap_err().to_string();
        assert!(
            e.contains("process.args[1]") && e.contains("exec takes strings of at most"),
            "{e}"
        );
        let many = vec![format!("\"{}\"", "y".repeat(100_000)); 200].join(",");
        let s = spec(&format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"process":{{"cwd":"/","args":["sh",{many}],"user":{{"uid":0,"gid":0}}}}}}"#
        ));
        let e = check(&s).unwrap_err().to_string();
        assert!(
            e.contains("process.args") && e.contains("exec allows at most"),
            "{e}"
        );
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},"rlimits":[{"type":"RLIMIT_NOFILE","soft":10,"hard":5}]}}"#,
        );
        assert!(check(&s)
            .unwrap_err()
            .to_string()
            .contains("process.rlimits[0]"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Arbitrary JSON that parses as a spec never makes the checks panic.
        #[test]
        fn arbitrary_specs_never_panic(args in proptest::collection::vec(".{0,20}", 0..4),
                                       dest in "[a-z/.]{0,12}",
                                       limit in proptest::prelude::any::<i64>(),
                                       soft in proptest::prelude::any::<u64>(),
                                       hard in proptest::prelude::any::<u64>()) {
            let json = serde_json::json!({
                "ociVersion": "1.0.2",
                "root": {"path": "rootfs"},
                "process": {"cwd": "/", "args": args, "user": {"uid": 0, "gid": 0},
                            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard}]},
                "mounts": [{"destination": dest}],
                "linux": {"resources": {"memory": {"limit": limit}}}
            });
            if let Ok(s) = serde_json::from_value::<Spec>(json) {
                let _ = check(&s);
            }
        }
    }

    #[test]
    fn empty_args_are_refused() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":[],"user":{"uid":0,"gid":0}}}"#,
        );
        assert!(check(&s).unwrap_err().to_string().contains("process.args"));
    }
}
