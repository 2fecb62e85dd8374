//! The GDT of the 64-bit entry, and the matching segment registers.
//!
//! KVM takes segment registers already loaded (`kvm_segment`), but the guest
//! reloads them from the GDT on its first far jump or interrupt, so both are
//! derived from the same descriptors.

use kvm_bindings::kvm_segment;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{GDT_ADDR, IDT_ADDR};

/// 64-bit code segment: present, ring 0, execute/read, L=1, G=1.
pub const CODE64: u64 = descriptor(0xa09b, 0, 0xfffff);
/// Data segment: present, ring 0, read/write, D/B=1, G=1.
pub const DATA: u64 = descriptor(0xc093, 0, 0xfffff);
/// 64-bit TSS (busy): needed by VMX to enter protected mode.
pub const TSS: u64 = descriptor(0x808b, 0, 0xfffff);
/// The table: null, code, data, TSS.
pub const TABLE: [u64; 4] = [0, CODE64, DATA, TSS];
/// Selector of the code segment.
pub const CODE_SELECTOR: u16 = 0x8;
/// Selector of the data segment.
pub const DATA_SELECTOR: u16 = 0x10;
/// Selector of the TSS.
pub const TSS_SELECTOR: u16 = 0x18;

/// Why the GDT could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing the GDT/IDT at {addr:#x}: {source}")]
pub struct GdtError {
    /// Guest address of the write that failed.
    pub addr: u64,
    /// Underlying error.
    pub source: vm_memory::GuestMemoryError,
}

/// Encodes a segment descriptor from its access/flags word (flags in bits
/// 12..16, access byte in bits 0..8), base and 20-bit limit.
pub const fn descriptor(flags: u16, base: u32, limit: u32) -> u64 {
    let flags = flags as u64;
    let base = base as u64;
    let limit = limit as u64;
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// Decodes `entry` into the segment register KVM loads for `selector`.
pub fn segment(entry: u64, selector: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let granular = (entry >> 55) & 1 == 1;
    kvm_segment {
        base,
        limit: if granular {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g: granular as u8,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from((entry >> 47) & 1 == 0),
        padding: 0,
    }
}

/// Writes [`TABLE`] at [`GDT_ADDR`] and an empty IDT at [`IDT_ADDR`].
pub fn write_tables(memory: &GuestMemoryMmap) -> Result<(), GdtError> {
    for (i, entry) in (0u64..).zip(TABLE) {
        let addr = GDT_ADDR + i * 8;
        memory
            .write_obj(entry, GuestAddress(addr))
            .map_err(|source| GdtError { addr, source })?;
    }
    memory
        .write_obj(0u64, GuestAddress(IDT_ADDR))
        .map_err(|source| GdtError {
            addr: IDT_ADDR,
            source,
        })
}
