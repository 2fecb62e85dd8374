//! `strata check`: what this host offers each isolation backend, and which
//! configured runtime classes can run here, one verdict per item.

use std::fmt;
use std::path::Path;
use std::process::Command;

use strata_cgroups::{Hierarchy, Version};
use strata_config::{BackendKind, Config, BUILTIN_KERNEL, MICROVM_DATA_DIR, QEMU_KERNEL};

use crate::class;

/// The verdict on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Present and usable.
    Ok,
    /// Absent from this host (a file, device, controller or program).
    Missing,
    /// Present but not usable, or not supported.
    No,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Verdict::Ok => "ok",
            Verdict::Missing => "missing",
            Verdict::No => "no",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The verdict.
    pub verdict: Verdict,
    /// What was checked, e.g. `namespace:user` or `class:native`.
    pub name: String,
    /// Why, in a few words.
    pub detail: String,
}

impl Item {
    fn new(verdict: Verdict, name: impl Into<String>, detail: impl Into<String>) -> Item {
        Item {
            verdict,
            name: name.into(),
            detail: detail.into(),
        }
    }

    /// Whether this item is a runtime class that cannot run.
    pub fn is_blocked_class(&self) -> bool {
        self.name.starts_with("class:") && self.verdict != Verdict::Ok
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<7}  {:<24}  {}", self.verdict, self.name, self.detail)
    }
}

/// The namespaces the kernel can make, by their `/proc/self/ns` names.
const NAMESPACES: [&str; 8] = ["mnt", "uts", "ipc", "pid", "net", "cgroup", "user", "time"];

/// The namespaces the native backend cannot do without.
const NATIVE_NAMESPACES: [&str; 4] = ["mnt", "uts", "ipc", "pid"];

/// Controllers worth reporting.
const CONTROLLERS: [&str; 8] = [
    "cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "devices", "blkio",
];

/// Checks the host; with `config`, also every runtime class it defines.
pub fn probe(config: Result<&Config, String>) -> Vec<Item> {
    let mut items = Vec::new();
    items.extend(namespaces());
    let cgroups = cgroups();
    let cgroups_ok = cgroups.first().is_some_and(|i| i.verdict == Verdict::Ok);
    items.extend(cgroups);
    items.extend(seccomp());
    items.extend(virtualization());
    items.push(containerd());
    match config {
        Ok(config) => {
            items.push(Item::new(
                Verdict::Ok,
                "config",
                config.source().to_string(),
            ));
            let missing_ns: Vec<&str> = NATIVE_NAMESPACES
                .iter()
                .copied()
                .filter(|ns| !ns_present(ns))
                .collect();
            for c in config.classes() {
                let name = format!("class:{}", c.name);
                let item = match class::runnable(c.backend) {
                    Err(e) => Item::new(Verdict::No, name, e.to_string()),
                    Ok(()) if c.backend == BackendKind::Native && !missing_ns.is_empty() => {
                        Item::new(
                            Verdict::No,
                            name,
                            format!("namespaces missing: {}", missing_ns.join(", ")),
                        )
                    }
                    Ok(()) if !cgroups_ok => Item::new(Verdict::No, name, "no usable cgroups"),
                    Ok(()) => Item::new(
                        Verdict::Ok,
                        name,
                        format!("backend {:?}", c.backend.as_str()),
                    ),
                };
                items.push(item);
            }
        }
        Err(e) => items.push(Item::new(Verdict::No, "config", e)),
    }
    items
}

fn ns_present(name: &str) -> bool {
    Path::new("/proc/self/ns").join(name).exists()
}

fn namespaces() -> Vec<Item> {
    NAMESPACES
        .iter()
        .map(|&ns| {
            let name = format!("namespace:{ns}");
            if !ns_present(ns) {
                return Item::new(
                    Verdict::Missing,
                    name,
                    format!("/proc/self/ns/{ns} is absent"),
                );
            }
            if ns == "user" {
                let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok());
                return match max {
                    Some(0) => Item::new(Verdict::No, name, "user.max_user_namespaces is 0"),
                    Some(n) => Item::new(Verdict::Ok, name, format!("up to {n}")),
                    None => Item::new(Verdict::Ok, name, "supported"),
                };
            }
            Item::new(Verdict::Ok, name, "supported")
        })
        .collect()
}

fn cgroups() -> Vec<Item> {
    let hierarchy = match Hierarchy::detect() {
        Ok(h) => h,
        Err(e) => return vec![Item::new(Verdict::Missing, "cgroups", e.to_string())],
    };
    let mut items = Vec::new();
    let (version, controllers) = match hierarchy.version() {
        Version::V1 => ("v1", hierarchy.controllers().unwrap_or_default()),
        Version::V2 => ("v2 (unified)", hierarchy.controllers().unwrap_or_default()),
    };
    items.push(Item::new(Verdict::Ok, "cgroups", version));
    for controller in CONTROLLERS {
        let name = format!("cgroup:{controller}");
        let builtin_v2 = hierarchy.version() == Version::V2
            && matches!(controller, "cpuacct" | "freezer" | "devices");
        let item = if builtin_v2 {
            Item::new(Verdict::Ok, name, "built into cgroup v2")
        } else if controllers.iter().any(|c| c == controller)
            || (hierarchy.version() == Version::V2
                && controller == "blkio"
                && controllers.iter().any(|c| c == "io"))
        {
            let at = hierarchy
                .mount_point(controller)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            Item::new(
                Verdict::Ok,
                name,
                format!("enabled {at}").trim_end().to_owned(),
            )
        } else {
            Item::new(Verdict::Missing, name, "not enabled on this host")
        };
        items.push(item);
    }
    items
}

fn seccomp() -> Vec<Item> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kernel = status.lines().any(|l| l.starts_with("Seccomp:"));
    let actions =
        std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    let version = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .ok();
    let api = libseccomp::get_api();
    let mut items = Vec::new();
    items.push(match (kernel, &version) {
        (false, _) => Item::new(Verdict::Missing, "seccomp", "the kernel has no seccomp"),
        (true, None) => Item::new(Verdict::Missing, "seccomp", "libseccomp is not usable"),
        (true, Some(v)) => Item::new(
            Verdict::Ok,
            "seccomp",
            format!("libseccomp {v} (API level {api})"),
        ),
    });
    let kernel_notify = actions.split_whitespace().any(|a| a == "user_notif");
    items.push(if !kernel_notify {
        Item::new(
            Verdict::No,
            "seccomp:user-notify",
            "the kernel does not offer user_notif",
        )
    } else if api < 5 {
        Item::new(
            Verdict::No,
            "seccomp:user-notify",
            format!("libseccomp API level {api} is below 5"),
        )
    } else {
        Item::new(
            Verdict::Ok,
            "seccomp:user-notify",
            "kernel user_notif and libseccomp support",
        )
    });
    items
}

fn virtualization() -> Vec<Item> {
    use std::os::unix::fs::FileTypeExt;
    let kvm = match std::fs::metadata("/dev/kvm") {
        Ok(m) if m.file_type().is_char_device() => Item::new(Verdict::Ok, "kvm", "/dev/kvm"),
        Ok(_) => Item::new(Verdict::No, "kvm", "/dev/kvm is not a character device"),
        Err(_) => Item::new(Verdict::Missing, "kvm", "/dev/kvm is absent"),
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = match strata_vmm::check::virtualization_flag(&cpuinfo) {
        Some(f) => Item::new(
            Verdict::Ok,
            "hardware-virtualization",
            format!("cpu flag {f}"),
        ),
        None => Item::new(
            Verdict::No,
            "hardware-virtualization",
            "no vmx or svm flag in /proc/cpuinfo",
        ),
    };
    let mut items = vec![kvm, hw];
    items.extend(hypervisors(
        strata_vmm::check::check(),
        find_program(QEMU, &std::env::var_os("PATH").unwrap_or_default()),
    ));
    items.extend(guest_files(Path::new(MICROVM_DATA_DIR)));
    items
}

/// The QEMU binary the microvm class runs.
const QEMU: &str = "qemu-system-x86_64";

/// What each monitor of the microvm class can do here: the built-in one
/// needs `host` (its check) to pass; QEMU needs its binary (`qemu`) and
/// uses KVM exactly when the built-in one could.
fn hypervisors(
    host: Result<(), strata_vmm::check::Unsupported>,
    qemu: Option<std::path::PathBuf>,
) -> Vec<Item> {
    let accel = if host.is_ok() { "kvm" } else { "tcg" };
    let builtin = match host {
        Ok(()) => Item::new(
            Verdict::Ok,
            "hypervisor:builtin",
            "hardware virtualization through /dev/kvm",
        ),
        Err(reason) => Item::new(Verdict::No, "hypervisor:builtin", reason.to_string()),
    };
    let qemu = match qemu {
        Some(path) => Item::new(
            Verdict::Ok,
            "hypervisor:qemu",
            format!("{}, accelerator {accel}", path.display()),
        ),
        None => Item::new(
            Verdict::Missing,
            "hypervisor:qemu",
            format!("{QEMU} not found on PATH"),
        ),
    };
    vec![builtin, qemu]
}

/// The executable `name` in the first directory of `path` (a `PATH` value)
/// that has it.
fn find_program(name: &str, path: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|file| {
            std::fs::metadata(file)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The guest files the microvm class boots, in `dir`: each monitor's
/// default kernel and the agent's initramfs.
fn guest_files(dir: &Path) -> Vec<Item> {
    [
        (
            "microvm:vmlinux",
            BUILTIN_KERNEL,
            "the built-in VMM's kernel",
        ),
        ("microvm:vmlinuz", QEMU_KERNEL, "QEMU's kernel"),
        ("microvm:initramfs", "initramfs.img", "the guest agent"),
    ]
    .into_iter()
    .map(|(name, file, what)| {
        let path = dir.join(file);
        if path.is_file() {
            Item::new(Verdict::Ok, name, format!("{} ({what})", path.display()))
        } else {
            Item::new(
                Verdict::Missing,
                name,
                format!(
                    "{} is absent (scripts/guest.sh makes {what})",
                    path.display()
                ),
            )
        }
    })
    .collect()
}

fn containerd() -> Item {
    match Command::new("containerd").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            Item::new(
                Verdict::Ok,
                "containerd",
                text.lines().next().unwrap_or("").trim().to_owned(),
            )
        }
        Ok(out) => Item::new(
            Verdict::No,
            "containerd",
            format!("`containerd --version` failed: {}", out.status),
        ),
        Err(_) => Item::new(Verdict::Missing, "containerd", "not found on PATH"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_blocks_the_unavailable_classes() {
        let config = Config::embedded();
        let items = probe(Ok(&config));
        let blocked: Vec<&str> = items
            .iter()
            .filter(|i| i.is_blocked_class())
            .map(|i| i.name.as_str())
            .collect();
        assert!(blocked.contains(&"class:interpose"), "{items:?}");
        assert!(blocked.contains(&"class:microvm"), "{items:?}");
        let microvm = items
            .iter()
            .find(|i| i.name == "class:microvm")
            .expect("microvm line");
        assert_eq!(
            microvm.detail,
            "backend \"microvm\" is not available in the strata command yet; it runs through containerd (io.containerd.strata.v2)"
        );
        for name in [
            "namespace:user",
            "cgroups",
            "seccomp",
            "kvm",
            "hypervisor:builtin",
            "hypervisor:qemu",
            "microvm:vmlinux",
            "containerd",
        ] {
            assert!(items.iter().any(|i| i.name == name), "{name} in {items:?}");
        }
    }

    /// The built-in VMM is ok or refused with the check's reason; QEMU is
    /// ok with the accelerator the backend would pick, or missing.
    #[test]
    fn hypervisors_are_reported() {
        use strata_vmm::check::Unsupported;
        let items = hypervisors(Err(Unsupported::Pvm), Some("/usr/bin/qemu".into()));
        assert_eq!(items[0].name, "hypervisor:builtin");
        assert_eq!(items[0].verdict, Verdict::No);
        assert!(items[0].detail.contains("kvm_pvm"), "{items:?}");
        assert_eq!(items[1].name, "hypervisor:qemu");
        assert_eq!(items[1].verdict, Verdict::Ok);
        assert_eq!(items[1].detail, "/usr/bin/qemu, accelerator tcg");
        let items = hypervisors(Ok(()), None);
        assert_eq!(items[0].verdict, Verdict::Ok);
        assert_eq!(items[1].verdict, Verdict::Missing);
        assert!(items[1].detail.contains("qemu-system-x86_64 not found"));
        let items = hypervisors(Ok(()), Some("/q".into()));
        assert!(items[1].detail.ends_with("accelerator kvm"), "{items:?}");
    }

    /// A program is found only as an executable file in a PATH directory.
    #[test]
    fn programs_are_found_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("prog"), "").unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(find_program("prog", &path), None, "not executable");
        std::fs::write(b.join("prog"), "").unwrap();
        std::fs::set_permissions(b.join("prog"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_program("prog", &path), Some(b.join("prog")));
        assert_eq!(find_program("other", &path), None);
    }

    /// Each guest file is ok when present and missing (naming the script
    /// that makes it) when absent.
    #[test]
    fn guest_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vmlinux"), "").unwrap();
        let items = guest_files(dir.path());
        let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            ["microvm:vmlinux", "microvm:vmlinuz", "microvm:initramfs"]
        );
        assert_eq!(items[0].verdict, Verdict::Ok);
        assert!(items[0].detail.contains("vmlinux"), "{items:?}");
        for item in &items[1..] {
            assert_eq!(item.verdict, Verdict::Missing, "{item:?}");
            assert!(item.detail.contains("scripts/guest.sh"), "{item:?}");
        }
    }

    #[test]
    fn lines_have_three_columns() {
        let line = Item::new(Verdict::Missing, "kvm", "/dev/kvm is absent").to_string();
        assert!(line.starts_with("missing  kvm "), "{line}");
        assert!(line.ends_with("  /dev/kvm is absent"), "{line}");
    }
}
