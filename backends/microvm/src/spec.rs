//! What of the OCI spec goes to the guest, and what shapes the VM.

use oci_spec::runtime::Spec;
use strata_agent::protocol::{Call, GuestMount};
use strata_backend::{Error, Result};
use strata_config::MIN_MEMORY_MIB;

/// Filesystems the guest kernel makes itself; any other mount (a bind mount
/// of a host path, above all) cannot reach into the VM.
const KERNEL_FILESYSTEMS: [&str; 5] = ["proc", "sysfs", "tmpfs", "mqueue", "devpts"];

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

/// The Create call for the agent. `/dev` is the guest's own (the agent
/// binds it, with its `pts`), so the spec's `/dev` and `devpts` mounts are
/// left out; mounts the guest cannot make are skipped with a warning.
pub fn create_call(spec: &Spec, stdin: bool) -> Result<Call> {
    let process = spec.process().clone().ok_or_else(|| Error::InvalidSpec {
        field: "process".into(),
        reason: "missing".into(),
    })?;
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
        mounts.push(GuestMount {
            destination,
            kind,
            source: m
                .source()
                .as_ref()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            options: m.options().clone().unwrap_or_default(),
        });
    }
    Ok(Call::Create {
        process: Box::new(process),
        hostname: spec.hostname().clone(),
        readonly: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
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
        let Call::Create { mounts, .. } = create_call(&s, false).unwrap() else {
            panic!("not a create call");
        };
        let kept: Vec<&str> = mounts.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(kept, ["/proc", "/dev/shm"]);
        assert_eq!(mounts[1].options, ["nosuid", "size=65536k"]);
    }
}
