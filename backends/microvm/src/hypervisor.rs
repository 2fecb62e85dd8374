//! Which virtual machine monitor runs a class's VMs: Strata's built-in one
//! where the host has hardware virtualization, QEMU (with KVM or by
//! emulation) otherwise or when the class asks for it.

use std::path::PathBuf;

use strata_backend::{Error, Result};
use strata_config::{Hypervisor, MicrovmOptions, BUILTIN_KERNEL, MICROVM_DATA_DIR, QEMU_KERNEL};
use strata_vmm::check::{check, Unsupported};

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

/// The monitor that runs a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitor {
    /// Strata's own VMM (`strata-vmm`), on KVM.
    Builtin,
    /// QEMU's microvm machine with this accelerator.
    Qemu(Accel),
}

impl Monitor {
    /// The kernel this monitor boots for `options`: the class's, else the
    /// monitor's default in the data directory.
    pub fn kernel(self, options: &MicrovmOptions) -> PathBuf {
        let default = match self {
            Monitor::Builtin => BUILTIN_KERNEL,
            Monitor::Qemu(_) => QEMU_KERNEL,
        };
        options
            .kernel
            .clone()
            .unwrap_or_else(|| PathBuf::from(MICROVM_DATA_DIR).join(default))
    }
}

/// Resolves the class's choice on this host, logging which monitor and why.
/// `builtin` on a host that cannot run it fails naming the reason.
pub fn choose(choice: Hypervisor) -> Result<Monitor> {
    let host = check();
    let monitor = decide(choice, &host)?;
    let why = match &host {
        Ok(()) => "the host has hardware virtualization".to_owned(),
        Err(reason) => reason.to_string(),
    };
    match monitor {
        Monitor::Builtin => log::info!(
            "hypervisor {:?}: the built-in VMM, since {why}",
            name(choice)
        ),
        Monitor::Qemu(accel) => log::info!(
            "hypervisor {:?}: QEMU with accelerator {}, since {why}",
            name(choice),
            accel.as_str()
        ),
    }
    Ok(monitor)
}

/// The decision from the class's `choice` and the host's [`check`] result.
fn decide(choice: Hypervisor, host: &std::result::Result<(), Unsupported>) -> Result<Monitor> {
    let qemu = Monitor::Qemu(if host.is_ok() { Accel::Kvm } else { Accel::Tcg });
    match (choice, host) {
        (Hypervisor::Builtin, Ok(())) | (Hypervisor::Auto, Ok(())) => Ok(Monitor::Builtin),
        (Hypervisor::Builtin, Err(reason)) => Err(Error::Process(format!(
            "hypervisor \"builtin\" cannot run on this host: {reason}; \
             use hypervisor \"qemu\" or \"auto\""
        ))),
        (Hypervisor::Auto, Err(_)) | (Hypervisor::Qemu, _) => Ok(qemu),
    }
}

/// The configuration's name of `choice`.
fn name(choice: Hypervisor) -> &'static str {
    match choice {
        Hypervisor::Auto => "auto",
        Hypervisor::Builtin => "builtin",
        Hypervisor::Qemu => "qemu",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `builtin` needs the host check to pass and otherwise fails naming
    /// the check's reason; `auto` follows the check; `qemu` is always QEMU,
    /// with KVM exactly when the check passes.
    #[test]
    fn decides_from_the_host_check() {
        let capable = Ok(());
        let pvm = Err(Unsupported::Pvm);
        assert_eq!(
            decide(Hypervisor::Builtin, &capable).unwrap(),
            Monitor::Builtin
        );
        let err = decide(Hypervisor::Builtin, &pvm).unwrap_err().to_string();
        assert!(
            err.contains("\"builtin\"") && err.contains("kvm_pvm"),
            "{err}"
        );
        assert_eq!(
            decide(Hypervisor::Auto, &capable).unwrap(),
            Monitor::Builtin
        );
        assert_eq!(
            decide(Hypervisor::Auto, &pvm).unwrap(),
            Monitor::Qemu(Accel::Tcg)
        );
        assert_eq!(
            decide(Hypervisor::Qemu, &capable).unwrap(),
            Monitor::Qemu(Accel::Kvm)
        );
        assert_eq!(
            decide(
                Hypervisor::Qemu,
                &Err(Unsupported::NoHardwareVirtualization)
            )
            .unwrap(),
            Monitor::Qemu(Accel::Tcg)
        );
    }

    /// An unset kernel is the monitor's own default; a class's kernel wins.
    #[test]
    fn kernel_defaults_per_monitor() {
        let mut options = MicrovmOptions::default();
        assert_eq!(
            Monitor::Builtin.kernel(&options),
            PathBuf::from(MICROVM_DATA_DIR).join("vmlinux")
        );
        assert_eq!(
            Monitor::Qemu(Accel::Tcg).kernel(&options),
            PathBuf::from(MICROVM_DATA_DIR).join("vmlinuz")
        );
        options.kernel = Some("/k".into());
        assert_eq!(Monitor::Builtin.kernel(&options), PathBuf::from("/k"));
    }
}
