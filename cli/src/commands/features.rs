//! `features`: the OCI runtime features document (runtime-spec
//! `features.md`) for the native backend.

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The hooks the native backend runs.
const HOOKS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The mount options the native backend understands (its init parses
/// these; keep the two in step).
const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// The namespaces the native backend can create or join.
const NAMESPACES: [&str; 7] = ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"];

/// The seccomp actions, operators, architectures and flags it supports.
const SECCOMP_ACTIONS: [&str; 9] = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];
const SECCOMP_OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];
const SECCOMP_ARCHS: [&str; 18] = [
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_NATIVE",
];
const SECCOMP_FLAGS: [&str; 4] = [
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// `strata features`.
pub fn run() -> Result<i32> {
    let text = serde_json::to_string_pretty(&features())
        .map_err(|e| Error::io("encoding the features", e.into()))?;
    println!("{text}");
    Ok(0)
}

/// The features document.
pub fn features() -> Value {
    let mut capabilities: Vec<caps::Capability> = caps::all().into_iter().collect();
    capabilities.sort_by_key(|c| c.index());
    let capabilities: Vec<String> = capabilities.iter().map(|c| c.to_string()).collect();
    // Waiting killably for a notification needs libseccomp API level 7.
    let supported_flags: Vec<&str> = SECCOMP_FLAGS
        .iter()
        .copied()
        .filter(|f| !f.ends_with("WAIT_KILLABLE_RECV") || libseccomp::get_api() >= 7)
        .collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": HOOKS,
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": NAMESPACES,
            "capabilities": capabilities,
            "cgroup": {
                "v1": true,
                "v2": true,
                "systemd": false,
                "systemdUser": false,
                "rdma": false,
            },
            "seccomp": {
                "enabled": true,
                "actions": SECCOMP_ACTIONS,
                "operators": SECCOMP_OPERATORS,
                "archs": SECCOMP_ARCHS,
                "knownFlags": SECCOMP_FLAGS,
                "supportedFlags": supported_flags,
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
        },
        "annotations": {
            "io.strata.version": env!("CARGO_PKG_VERSION"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_oci_features() {
        let value = features();
        let parsed: oci_spec::runtime::Features =
            serde_json::from_value(value.clone()).expect("OCI features");
        assert_eq!(parsed.oci_version_min(), "1.0.0");
        let caps = value["linux"]["capabilities"].as_array().expect("caps");
        assert!(caps.iter().any(|c| c == "CAP_SYS_ADMIN"), "{caps:?}");
        assert_eq!(value["linux"]["cgroup"]["systemd"], false);
        assert_eq!(value["linux"]["apparmor"]["enabled"], false);
    }
}
