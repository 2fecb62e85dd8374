//! vCPU state for the 64-bit entry: CPUID, segment and control registers,
//! general registers and FPU.

use kvm_bindings::{kvm_fpu, kvm_regs, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd};

use crate::boot::gdt;
use crate::layout::{BOOT_STACK, GDT_ADDR, IDT_ADDR, PML4_ADDR, ZERO_PAGE_ADDR};

/// CR0: protected mode.
const CR0_PE: u64 = 1;
/// CR0: extension type (always set on modern CPUs).
const CR0_ET: u64 = 1 << 4;
/// CR0: paging.
const CR0_PG: u64 = 1 << 31;
/// CR4: physical address extension.
const CR4_PAE: u64 = 1 << 5;
/// EFER: long mode enable.
const EFER_LME: u64 = 1 << 8;
/// EFER: long mode active.
const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 is always set.
const RFLAGS_RESERVED: u64 = 0x2;

/// Why a vCPU could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// An ioctl on the vCPU or KVM failed.
    #[error("{what} on vCPU {cpu}: {source}")]
    Ioctl {
        /// The operation.
        what: &'static str,
        /// The vCPU.
        cpu: u8,
        /// Underlying error.
        source: kvm_ioctls::Error,
    },
}

/// Reads the CPUID KVM supports, to be given to every vCPU.
pub fn supported_cpuid(kvm: &Kvm) -> Result<CpuId, CpuError> {
    kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|source| CpuError::Ioctl {
            what: "KVM_GET_SUPPORTED_CPUID",
            cpu: 0,
            source,
        })
}

/// Gives vCPU `cpu` the host-supported CPUID with its own APIC id.
pub fn set_cpuid(vcpu: &VcpuFd, cpu: u8, cpuid: &CpuId) -> Result<(), CpuError> {
    let mut cpuid = cpuid.clone();
    for entry in cpuid.as_mut_slice() {
        if entry.function == 1 {
            entry.ebx = (entry.ebx & 0x00ff_ffff) | (u32::from(cpu) << 24);
        }
    }
    vcpu.set_cpuid2(&cpuid).map_err(|source| CpuError::Ioctl {
        what: "KVM_SET_CPUID2",
        cpu,
        source,
    })
}

/// Puts vCPU `cpu` in 64-bit long mode with paging through the identity
/// tables, about to execute `entry` with `rsi` pointing at the zero page.
pub fn setup_long_mode(vcpu: &VcpuFd, cpu: u8, entry: u64) -> Result<(), CpuError> {
    let err = |what| move |source| CpuError::Ioctl { what, cpu, source };
    let mut sregs = vcpu.get_sregs().map_err(err("KVM_GET_SREGS"))?;
    let code = gdt::segment(gdt::CODE64, gdt::CODE_SELECTOR);
    let data = gdt::segment(gdt::DATA, gdt::DATA_SELECTOR);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = gdt::segment(gdt::TSS, gdt::TSS_SELECTOR);
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (gdt::TABLE.len() * 8 - 1) as u16;
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 7;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_ET | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(err("KVM_SET_SREGS"))?;

    let regs = kvm_regs {
        rip: entry,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        rsi: ZERO_PAGE_ADDR,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(err("KVM_SET_REGS"))?;

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(err("KVM_SET_FPU"))
}
