//! Whether this host can run real guests on the built-in VMM.
//!
//! Linux guests need hardware virtualization (VMX or SVM). Hosts whose
//! `/dev/kvm` is provided by `kvm_pvm` (or that have no virtualization
//! extensions at all) only run PVM-built guests at speed; anything else
//! falls back to KVM's instruction emulator, which a stock kernel does not
//! survive.

use std::path::Path;

/// Why the host cannot run real guests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// `/dev/kvm` is missing or cannot be opened.
    #[error("/dev/kvm is not usable: {0}")]
    NoKvm(String),
    /// `/dev/kvm` is backed by the PVM module.
    #[error("/dev/kvm is provided by kvm_pvm (no hardware virtualization): only PVM-built guests can run")]
    Pvm,
    /// The CPU flags show neither VMX nor SVM.
    #[error("the CPU has no hardware virtualization (no vmx or svm flag in /proc/cpuinfo)")]
    NoHardwareVirtualization,
}

/// What [`check_facts`] decides from.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// Result of opening `/dev/kvm`.
    pub kvm: Result<(), String>,
    /// Whether the `kvm_pvm` module is loaded.
    pub pvm_loaded: bool,
    /// Contents of `/proc/cpuinfo`.
    pub cpuinfo: String,
}

/// Checks this host.
pub fn check() -> Result<(), Unsupported> {
    let kvm = kvm_ioctls::Kvm::new().map(drop).map_err(|e| e.to_string());
    let facts = HostFacts {
        kvm,
        pvm_loaded: Path::new("/sys/module/kvm_pvm").exists(),
        cpuinfo: std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
    };
    check_facts(&facts)
}

/// Decides from `facts`: KVM must open, not be PVM, and the CPU must
/// advertise VMX or SVM.
pub fn check_facts(facts: &HostFacts) -> Result<(), Unsupported> {
    facts.kvm.clone().map_err(Unsupported::NoKvm)?;
    if facts.pvm_loaded {
        return Err(Unsupported::Pvm);
    }
    if virtualization_flag(&facts.cpuinfo).is_none() {
        return Err(Unsupported::NoHardwareVirtualization);
    }
    Ok(())
}

/// The hardware virtualization flag (`vmx` or `svm`) that `cpuinfo` (the
/// text of `/proc/cpuinfo`) shows, if any.
pub fn virtualization_flag(cpuinfo: &str) -> Option<&str> {
    cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .flat_map(|line| line.split_whitespace())
        .find(|flag| *flag == "vmx" || *flag == "svm")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pvm: bool, flags: &str) -> HostFacts {
        HostFacts {
            kvm: Ok(()),
            pvm_loaded: pvm,
            cpuinfo: format!("processor\t: 0\nflags\t\t: fpu sse2 {flags} lm\n"),
        }
    }

    /// VMX or SVM without PVM is enough; PVM, no flag or no KVM is not.
    #[test]
    fn decides_from_facts() {
        assert_eq!(check_facts(&facts(false, "vmx")), Ok(()));
        assert_eq!(check_facts(&facts(false, "svm")), Ok(()));
        assert_eq!(check_facts(&facts(true, "vmx")), Err(Unsupported::Pvm));
        assert_eq!(
            check_facts(&facts(false, "hypervisor")),
            Err(Unsupported::NoHardwareVirtualization)
        );
        let mut no_kvm = facts(false, "vmx");
        no_kvm.kvm = Err("No such file or directory".into());
        assert!(check_facts(&no_kvm)
            .unwrap_err()
            .to_string()
            .contains("/dev/kvm"));
    }

    /// On this host the answer matches the module and CPU flags present.
    #[test]
    fn real_host() {
        let pvm = Path::new("/sys/module/kvm_pvm").exists();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let hw = cpuinfo.split_whitespace().any(|f| f == "vmx" || f == "svm");
        let result = check();
        if pvm {
            assert_eq!(result, Err(Unsupported::Pvm));
        } else if !hw && Path::new("/dev/kvm").exists() {
            assert_eq!(result, Err(Unsupported::NoHardwareVirtualization));
        }
        eprintln!("host check: {result:?}");
    }
}
