//! The `config.json` that `strata spec` writes: the conventional starting
//! point of an OCI bundle (an interactive `sh` on a read-only `rootfs`,
//! the usual pseudo-filesystems, a small capability set, masked and
//! read-only kernel paths, and new namespaces), plus its rootless variant.

use serde_json::{json, Value};

/// The `PATH` of the default process.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Capabilities the default process keeps.
const DEFAULT_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// The default spec; `cgroup_ns` adds a cgroup namespace (on hosts with the
/// unified cgroup v2 hierarchy).
pub fn default_spec(cgroup_ns: bool) -> Value {
    let caps = json!(DEFAULT_CAPS);
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "network"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if cgroup_ns {
        namespaces.push(json!({"type": "cgroup"}));
    }
    json!({
        "ociVersion": oci_spec::runtime::VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [DEFAULT_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "strata",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    })
}

/// Turns `spec` into one an unprivileged user can run: a new user namespace
/// mapping the caller to root (and no new network namespace), `/sys` bound
/// from the host instead of mounted, no `uid=`/`gid=` mount options, and no
/// cgroup limits.
pub fn make_rootless(spec: &mut Value, uid: u32, gid: u32) {
    let linux = &mut spec["linux"];
    let mut namespaces: Vec<Value> = linux["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|ns| !matches!(ns["type"].as_str(), Some("network" | "user")))
        .collect();
    namespaces.push(json!({"type": "user"}));
    linux["namespaces"] = Value::Array(namespaces);
    linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
    linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    if let Some(object) = linux.as_object_mut() {
        object.remove("resources");
    }
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        for mount in mounts.iter_mut() {
            if mount["destination"] == "/sys" {
                *mount = json!({
                    "destination": "/sys",
                    "type": "none",
                    "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
                });
                continue;
            }
            if let Some(options) = mount["options"].as_array_mut() {
                options.retain(|o| {
                    !o.as_str()
                        .is_some_and(|o| o.starts_with("uid=") || o.starts_with("gid="))
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_is_a_valid_oci_spec() {
        let value = default_spec(false);
        let spec: oci_spec::runtime::Spec =
            serde_json::from_value(value.clone()).expect("parses as a spec");
        let process = spec.process().as_ref().expect("process");
        assert_eq!(process.args().as_deref(), Some(&["sh".to_owned()][..]));
        assert_eq!(process.terminal(), Some(true));
        assert_eq!(spec.mounts().as_ref().map(Vec::len), Some(7));
        let namespaces = |v: &Value| v["linux"]["namespaces"].as_array().map(Vec::len);
        assert_eq!(namespaces(&value), Some(5));
        assert_eq!(namespaces(&default_spec(true)), Some(6));
    }

    #[test]
    fn rootless_variant() {
        let mut value = default_spec(false);
        make_rootless(&mut value, 1000, 1001);
        let spec: oci_spec::runtime::Spec =
            serde_json::from_value(value.clone()).expect("parses as a spec");
        let linux = spec.linux().as_ref().expect("linux");
        let types: Vec<String> = linux
            .namespaces()
            .iter()
            .flatten()
            .map(|ns| ns.typ().to_string())
            .collect();
        assert!(types.iter().any(|t| t == "user"), "{types:?}");
        assert!(!types.iter().any(|t| t == "network"), "{types:?}");
        assert_eq!(value["linux"]["uidMappings"][0]["hostID"], 1000);
        assert_eq!(value["linux"]["gidMappings"][0]["hostID"], 1001);
        assert!(linux.resources().is_none());
        let text = value["mounts"].to_string();
        assert!(!text.contains("gid=5"), "{text}");
        assert!(text.contains("rbind"), "{text}");
    }
}
