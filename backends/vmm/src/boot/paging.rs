//! Identity page tables for the 64-bit entry.
//!
//! Linux's 64-bit boot protocol (and any long-mode guest) starts with paging
//! on; the first 4 GiB (RAM and the virtio-mmio windows) are mapped 1:1 with
//! 2 MiB pages, enough for the kernel to reach its own page tables.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{PDPT_ADDR, PD_ADDR, PML4_ADDR};

/// Present and writable.
const PRESENT_RW: u64 = 0x3;
/// Present, writable and a 2 MiB page.
const PRESENT_RW_HUGE: u64 = 0x83;

/// Why the page tables could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing the identity page tables at {addr:#x}: {source}")]
pub struct PagingError {
    /// Guest address of the entry that failed.
    pub addr: u64,
    /// Underlying error.
    pub source: vm_memory::GuestMemoryError,
}

/// GiBs mapped, one page directory each.
pub const MAPPED_GIB: u64 = 4;

/// Writes PML4, PDPT and the page directories mapping guest-physical
/// 0..4 GiB to itself and returns the address to load into CR3.
pub fn write_identity_tables(memory: &GuestMemoryMmap) -> Result<u64, PagingError> {
    write(memory, PML4_ADDR, PDPT_ADDR | PRESENT_RW)?;
    for gib in 0..MAPPED_GIB {
        let pd = PD_ADDR + gib * 0x1000;
        write(memory, PDPT_ADDR + gib * 8, pd | PRESENT_RW)?;
        for i in 0..512u64 {
            let page = (gib << 30) | (i << 21);
            write(memory, pd + i * 8, page | PRESENT_RW_HUGE)?;
        }
    }
    Ok(PML4_ADDR)
}

fn write(memory: &GuestMemoryMmap, addr: u64, value: u64) -> Result<(), PagingError> {
    memory
        .write_obj(value, GuestAddress(addr))
        .map_err(|source| PagingError { addr, source })
}
