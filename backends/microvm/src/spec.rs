//! What of the OCI spec goes to the guest, what shapes the VM, and which
//! part of a Kubernetes pod a container is.

use oci_spec::runtime::Spec;
use strata_agent::protocol::agent::Mount;
use strata_agent::protocol::Call;
use strata_backend::{Error, Result};
use strata_config::MIN_MEMORY_MIB;

/// Filesystems the guest kernel makes itself; any other mount (a bind mount
/// of a host path, above all) cannot reach into the VM.
const KERNEL_FILESYSTEMS: [&str; 5] = ["proc", "sysfs", "tmpfs", "mqueue", "devpts"];

/// The annotation containerd's CRI plugin gives every container of a pod:
/// `sandbox` for the pod's sandbox (pause) container, `container` otherwise.
///
/// containerd 1.6.20 gives a sandbox container exactly `container-type`,
/// `sandbox-id` (its own id), `sandbox-log-directory`, `sandbox-name`,
/// `sandbox-namespace` and `sandbox-uid` (all under `io.kubernetes.cri.`;
/// the shim logs them when it boots a pod's VM): no pod size, so a pod VM
/// there gets the class's memory and vCPUs.
const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// The annotation naming the pod's sandbox container.
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// The pod's memory, in bytes (the sum of its containers' limits), on the
/// sandbox container; containerd sets it from 1.7 on, 1.6 does not.
const SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";
/// The pod's CPU quota and period (µs), on the sandbox container; also
/// from containerd 1.7 on.
const SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
const SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";

/// Which part of a pod a container is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not in a pod: a VM of its own.
    Alone,
    /// A pod's sandbox container: it boots the pod's VM.
    Sandbox,
    /// An app container of the pod whose sandbox has this id: it runs in
    /// the sandbox's VM.
    Member(String),
}

fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a str> {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The role the CRI annotations give the container.
pub fn role(spec: &Spec) -> Role {
    match (
        annotation(spec, CONTAINER_TYPE),
        annotation(spec, SANDBOX_ID),
    ) {
        (Some("sandbox"), _) => Role::Sandbox,
        (Some("container"), Some(sandbox)) => Role::Member(sandbox.to_owned()),
        _ => Role::Alone,
    }
}

/// The CRI annotations of `spec`, for the log.
pub fn cri_annotations(spec: &Spec) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = spec
        .annotations()
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("io.kubernetes.cri."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    found.sort();
    found
}

fn number(spec: &Spec, key: &str) -> Result<Option<u64>> {
    let Some(value) = annotation(spec, key) else {
        return Ok(None);
    };
    value.parse().map(Some).map_err(|_| Error::InvalidSpec {
        field: format!("annotations[{key:?}]"),
        reason: format!("{value:?} is not a whole number"),
    })
}

/// A pod VM's memory, as Kata sizes it: the class's memory (the VM's own
/// overhead: kernel, agent, page cache) plus the pod's memory from the
/// sandbox's annotation, when containerd sends one.
pub fn pod_memory_mib(spec: &Spec, class_mib: u32) -> Result<u32> {
    let pod = number(spec, SANDBOX_MEMORY)?.unwrap_or(0);
    let pod_mib = pod.div_ceil(1 << 20).min(u32::MAX as u64) as u32;
    Ok(class_mib.saturating_add(pod_mib))
}

/// A pod VM's virtual CPUs: the pod's CPU quota over its period, rounded
/// up, when containerd sends them (and the quota is set); else the class's.
pub fn pod_vcpus(spec: &Spec, class_vcpus: u32) -> Result<u32> {
    let quota = number(spec, SANDBOX_CPU_QUOTA)?.filter(|&q| q > 0);
    let period = number(spec, SANDBOX_CPU_PERIOD)?.filter(|&p| p > 0);
    Ok(match (quota, period) {
        (Some(quota), Some(period)) => quota.div_ceil(period).clamp(1, 255) as u32,
        _ => class_vcpus,
    })
}

/// The guest's memory: the class's size, capped by the container's memory
/// limit. A limit too small to boot the guest in is refused.
pub fn memory_mib(spec: &Spec, class_mib: u32) -> Result<u32> {
    let limit = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|&l| l > 0);
    let Some(limit) = limit else {
        return Ok(class_mib);
    };
    let limit_mib = (limit as u64 >> 20).min(u32::MAX as u64) as u32;
    if limit_mib < MIN_MEMORY_MIB {
        return Err(Error::InvalidSpec {
            field: "linux.resources.memory.limit".into(),
            reason: format!(
                "{limit} bytes is below the {MIN_MEMORY_MIB} MiB a microVM needs to boot"
            ),
        });
    }
    Ok(class_mib.min(limit_mib))
}

/// The Create call for the agent: container `id`, its root filesystem on
/// the disk with serial `disk`. `/dev` is the guest's own (the agent binds
/// it, with its `pts`), so the spec's `/dev` and `devpts` mounts are left
/// out; mounts the guest cannot make are skipped with a warning.
///
/// The spec is checked as the native class checks it, and a seccomp
/// profile that notifies an agent on the host is refused: the host's agent
/// cannot reach the guest's processes.
pub fn create_call(spec: &Spec, id: &str, disk: &str, stdin: bool) -> Result<Call> {
    // The guest runs the native class's container code, which the spec
    // must suit as on the host.
    strata_native::check_spec(spec)?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    if let Some(path) = seccomp.and_then(|s| s.listener_path().as_ref()) {
        return Err(Error::InvalidSpec {
            field: "linux.seccomp.listenerPath".into(),
            reason: format!(
                "{}: a seccomp agent on the host cannot serve a microVM's processes",
                path.display()
            ),
        });
    }
    let mut mounts = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let destination = m.destination().to_string_lossy().into_owned();
        let kind = m.typ().clone().unwrap_or_default();
        if destination == "/dev" || kind == "devpts" {
            continue;
        }
        if !KERNEL_FILESYSTEMS.contains(&kind.as_str()) {
            log::warn!(
                "mounts[{i}] ({kind:?} on {destination}): not available inside a microVM, skipped"
            );
            continue;
        }
        mounts.push(Mount {
            destination,
            kind,
            source: m
                .source()
                .as_ref()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            options: m.options().clone().unwrap_or_default(),
            ..Default::default()
        });
    }
    // The guest makes the mounts above itself; hooks run on the host.
    let mut guest_spec = spec.clone();
    guest_spec.set_mounts(None).set_hooks(None);
    Ok(Call::Create {
        container: id.to_owned(),
        disk: disk.to_owned(),
        spec: Box::new(guest_spec),
        mounts,
        stdin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_memory_limit_caps_the_guest() {
        let base = serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}});
        assert_eq!(memory_mib(&spec(base.clone()), 256).unwrap(), 256);
        let mut limited = base.clone();
        limited["linux"] = serde_json::json!({"resources": {"memory": {"limit": 128u64 << 20}}});
        assert_eq!(memory_mib(&spec(limited), 256).unwrap(), 128);
        let mut tiny = base;
        tiny["linux"] = serde_json::json!({"resources": {"memory": {"limit": 8u64 << 20}}});
        let err = memory_mib(&spec(tiny), 256).unwrap_err().to_string();
        assert!(err.contains("linux.resources.memory.limit"), "{err}");
    }

    #[test]
    fn cri_annotations_give_the_role_and_the_pod_size() {
        let with = |annotations: serde_json::Value| {
            spec(serde_json::json!({
                "ociVersion": "1.0.2",
                "root": {"path": "rootfs"},
                "annotations": annotations
            }))
        };
        assert_eq!(role(&with(serde_json::json!({}))), Role::Alone);
        let sandbox = with(serde_json::json!({
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-id": "pod1",
            "io.kubernetes.cri.sandbox-memory": (64u64 << 20).to_string(),
            "io.kubernetes.cri.sandbox-cpu-quota": "150000",
            "io.kubernetes.cri.sandbox-cpu-period": "100000"
        }));
        assert_eq!(role(&sandbox), Role::Sandbox);
        assert_eq!(pod_memory_mib(&sandbox, 256).unwrap(), 320);
        assert_eq!(pod_vcpus(&sandbox, 1).unwrap(), 2);
        let member = with(serde_json::json!({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": "pod1"
        }));
        assert_eq!(role(&member), Role::Member("pod1".into()));
        // containerd 1.6 sends neither size: the class's apply.
        assert_eq!(pod_memory_mib(&member, 256).unwrap(), 256);
        assert_eq!(pod_vcpus(&member, 1).unwrap(), 1);
        let bad = with(serde_json::json!({"io.kubernetes.cri.sandbox-memory": "lots"}));
        let err = pod_memory_mib(&bad, 256).unwrap_err().to_string();
        assert!(
            err.contains("sandbox-memory") && err.contains("lots"),
            "{err}"
        );
    }

    #[test]
    fn only_kernel_filesystems_reach_the_guest() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
                {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["rbind"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "size=65536k"]}
            ]
        }));
        let Call::Create { mounts, .. } = create_call(&s, "c", "root", false).unwrap() else {
            panic!("not a create call");
        };
        let kept: Vec<&str> = mounts.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(kept, ["/proc", "/dev/shm"]);
        assert_eq!(mounts[1].options, ["nosuid", "size=65536k"]);
    }
}
