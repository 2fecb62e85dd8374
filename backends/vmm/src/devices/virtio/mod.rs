//! Virtio devices and their MMIO transport.
//!
//! A device only knows its queues and configuration space; the transport
//! ([`mmio::MmioTransport`]) owns feature negotiation, queue set-up and
//! interrupts, so each device module stays about its own protocol.

pub mod block;
pub mod console;
pub mod mmio;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

/// Feature bit every modern (virtio 1.x) device offers.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// A virtio device model driven by a transport.
pub trait VirtioDevice: Send {
    /// What a failed request reports.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Virtio device id (2 = block, 3 = console).
    fn device_type(&self) -> u32;
    /// Features offered to the driver.
    fn features(&self) -> u64;
    /// Largest size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &'static [u16];
    /// Reads `data.len()` bytes of configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Consumes what the driver made available on queue `index`; returns
    /// whether buffers were put in the used ring.
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        memory: &GuestMemoryMmap,
    ) -> Result<bool, Self::Error>;
}

/// Copies the bytes of `config` at `offset` into `data` (zeros past its end).
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|at| config.get(at))
            .copied()
            .unwrap_or(0);
    }
}
