//! Which virtual machine monitor runs a class's VMs, and with which accelerator.

use strata_backend::{Error, Result};
use strata_config::Hypervisor;

/// How QEMU executes guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's own binary translation: slow, but needs nothing from the host.
    Tcg,
}

impl Accel {
    /// QEMU's name for it (`-accel NAME`).
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Whether the CPU has hardware virtualization (`vmx` or `svm` in
/// `/proc/cpuinfo`); a paravirtual /dev/kvm without it cannot boot a stock
/// kernel.
fn hardware_virtualization() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// Resolves the class's choice to QEMU and its accelerator, logging why.
/// The built-in monitor does not exist yet: `builtin` is refused and `auto`
/// falls back to QEMU.
pub fn choose(choice: Hypervisor) -> Result<Accel> {
    let hardware = hardware_virtualization();
    let accel = if hardware && std::path::Path::new("/dev/kvm").exists() {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    match choice {
        Hypervisor::Builtin => {
            return Err(Error::NotAvailable("microvm (hypervisor builtin)".into()))
        }
        Hypervisor::Auto => log::info!(
            "hypervisor \"auto\": QEMU, since the built-in monitor is not part of this build; \
             accelerator {} ({})",
            accel.as_str(),
            if hardware {
                "the CPU has vmx/svm"
            } else {
                "the CPU has no vmx/svm"
            }
        ),
        Hypervisor::Qemu => log::info!(
            "hypervisor \"qemu\", accelerator {} ({})",
            accel.as_str(),
            if hardware {
                "the CPU has vmx/svm"
            } else {
                "the CPU has no vmx/svm"
            }
        ),
    }
    Ok(accel)
}
