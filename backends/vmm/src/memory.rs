//! Guest RAM: one anonymous mapping, registered with KVM as slot 0.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress,
};

use crate::layout::MAX_MEMORY;

/// Why guest RAM could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The requested size is zero, not page-aligned or too large.
    #[error("guest memory of {0} bytes: must be a non-zero multiple of 4 KiB up to {MAX_MEMORY}")]
    Size(u64),
    /// The host mapping failed.
    #[error("mapping {size} bytes of guest memory: {source}")]
    Map {
        /// Requested size.
        size: u64,
        /// Underlying error.
        source: vm_memory::mmap::FromRangesError,
    },
    /// The host address of a region is unknown.
    #[error("host address of the guest memory region at {0:#x}: {1}")]
    HostAddress(u64, vm_memory::GuestMemoryError),
    /// KVM refused the memory slot.
    #[error("registering guest memory at {addr:#x} ({size} bytes) with KVM: {source}")]
    Register {
        /// Guest address of the region.
        addr: u64,
        /// Region size.
        size: u64,
        /// Underlying error.
        source: kvm_ioctls::Error,
    },
}

/// Maps `size` bytes of guest RAM at guest address 0.
pub fn create(size: u64) -> Result<GuestMemoryMmap, MemoryError> {
    if size == 0 || !size.is_multiple_of(4096) || size > MAX_MEMORY {
        return Err(MemoryError::Size(size));
    }
    let len = usize::try_from(size).map_err(|_| MemoryError::Size(size))?;
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), len)])
        .map_err(|source| MemoryError::Map { size, source })
}

/// Registers every region of `memory` with the VM, one slot per region.
pub fn register(vm: &VmFd, memory: &GuestMemoryMmap) -> Result<(), MemoryError> {
    for (slot, region) in (0u32..).zip(memory.iter()) {
        let addr = region.start_addr().0;
        let size = region.len();
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|e| MemoryError::HostAddress(addr, e))?;
        let desc = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: addr,
            memory_size: size,
            userspace_addr: host as u64,
        };
        // SAFETY: the mapping belongs to `memory`, which the VM owner keeps
        // alive (and unmoved: it is an mmap) for as long as the VM exists.
        unsafe { vm.set_user_memory_region(desc) }.map_err(|source| MemoryError::Register {
            addr,
            size,
            source,
        })?;
    }
    Ok(())
}
