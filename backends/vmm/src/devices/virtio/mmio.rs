//! The virtio-mmio transport (version 2): the register window the guest
//! programs, feature negotiation, queue set-up and the used-buffer
//! interrupt.

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::VirtioDevice;

/// "virt" in little endian.
pub const MAGIC: u32 = 0x7472_6976;
/// Transport version implemented (modern virtio-mmio).
pub const VERSION: u32 = 2;
/// Vendor id reported to the guest ("STRA").
pub const VENDOR_ID: u32 = 0x4152_5453;
/// Device status: the driver finished feature negotiation.
pub const STATUS_FEATURES_OK: u32 = 8;
/// Device status: the driver is ready.
pub const STATUS_DRIVER_OK: u32 = 4;
/// Interrupt status bit: used buffers were returned.
pub const INT_VRING: u32 = 1;

/// Register offsets.
pub mod reg {
    /// Magic value.
    pub const MAGIC: u64 = 0x000;
    /// Transport version.
    pub const VERSION: u64 = 0x004;
    /// Device id.
    pub const DEVICE_ID: u64 = 0x008;
    /// Vendor id.
    pub const VENDOR_ID: u64 = 0x00c;
    /// Device features (the word chosen by `DEVICE_FEATURES_SEL`).
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// Device features word selector.
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// Driver features (the word chosen by `DRIVER_FEATURES_SEL`).
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// Driver features word selector.
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// Queue selector.
    pub const QUEUE_SEL: u64 = 0x030;
    /// Largest size of the selected queue.
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// Size of the selected queue.
    pub const QUEUE_NUM: u64 = 0x038;
    /// Selected queue ready.
    pub const QUEUE_READY: u64 = 0x044;
    /// Queue notification.
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// Interrupt status.
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// Interrupt acknowledge.
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// Device status.
    pub const STATUS: u64 = 0x070;
    /// Descriptor table address, low word.
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// Descriptor table address, high word.
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// Available ring address, low word.
    pub const QUEUE_AVAIL_LOW: u64 = 0x090;
    /// Available ring address, high word.
    pub const QUEUE_AVAIL_HIGH: u64 = 0x094;
    /// Used ring address, low word.
    pub const QUEUE_USED_LOW: u64 = 0x0a0;
    /// Used ring address, high word.
    pub const QUEUE_USED_HIGH: u64 = 0x0a4;
    /// Configuration generation.
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// Start of the device configuration space.
    pub const CONFIG: u64 = 0x100;
}

/// Why a transport access failed.
#[derive(Debug, thiserror::Error)]
pub enum MmioError {
    /// The device failed processing a queue.
    #[error("virtio device {device} processing queue {queue}: {source}")]
    Device {
        /// Virtio device id.
        device: u32,
        /// Queue index.
        queue: usize,
        /// Underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The interrupt could not be raised.
    #[error("raising the interrupt of virtio device {device}: {source}")]
    Interrupt {
        /// Virtio device id.
        device: u32,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// A register window the guest reaches through MMIO exits.
pub trait MmioDevice: Send {
    /// Guest read of `data.len()` bytes at `offset` in the window.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Guest write of `data` at `offset` in the window.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), MmioError>;
}

/// A virtio device behind its virtio-mmio register window.
pub struct MmioTransport<D: VirtioDevice> {
    device: D,
    memory: GuestMemoryMmap,
    irq: EventFd,
    queues: Vec<Queue>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    interrupt_status: u32,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// Wraps `device`, which reads guest `memory` and raises `irq`.
    pub fn new(device: D, memory: GuestMemoryMmap, irq: EventFd) -> MmioTransport<D> {
        let mut transport = MmioTransport {
            device,
            memory,
            irq,
            queues: Vec::new(),
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            interrupt_status: 0,
        };
        transport.reset();
        transport
    }

    /// The device model.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device model, to hand it host-side input.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Features both sides agreed on.
    pub fn acked_features(&self) -> u64 {
        self.driver_features & self.device.features()
    }

    /// Device status as last written by the driver.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Processes queue `index` if the driver made it live, and interrupts
    /// the guest when buffers were used.
    pub fn process_queue(&mut self, index: usize) -> Result<(), MmioError> {
        let device = self.device.device_type();
        if self.status & STATUS_DRIVER_OK == 0 {
            return Ok(());
        }
        let Some(queue) = self.queues.get_mut(index) else {
            return Ok(());
        };
        if !queue.ready() {
            return Ok(());
        }
        let used = self
            .device
            .process_queue(index, queue, &self.memory)
            .map_err(|e| MmioError::Device {
                device,
                queue: index,
                source: Box::new(e),
            })?;
        if used {
            self.interrupt_status |= INT_VRING;
            self.irq
                .write(1)
                .map_err(|source| MmioError::Interrupt { device, source })?;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.queues = self
            .device
            .queue_max_sizes()
            .iter()
            .filter_map(|max| Queue::new(*max).ok())
            .collect();
        self.queue_sel = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.status = 0;
        self.interrupt_status = 0;
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn register(&self, offset: u64) -> u32 {
        let features = self.device.features();
        let queue = self.queues.get(self.queue_sel as usize);
        match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_type(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => features as u32,
                1 => (features >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => queue.map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => queue.map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            _ => 0,
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let mut value = value;
        if value & STATUS_FEATURES_OK != 0 && self.driver_features & !self.device.features() != 0 {
            value &= !STATUS_FEATURES_OK;
        }
        self.status = value;
    }
}

impl<D: VirtioDevice> MmioDevice for MmioTransport<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            self.device.read_config(offset - reg::CONFIG, data);
            return;
        }
        let value = if data.len() == 4 {
            self.register(offset)
        } else {
            0
        };
        super::read_config_bytes(&value.to_le_bytes(), 0, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), MmioError> {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return Ok(());
        };
        let value = u32::from_le_bytes(bytes);
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES if self.status & STATUS_FEATURES_OK == 0 => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return Ok(()),
                };
                self.driver_features &= !(0xffff_ffffu64 << shift);
                self.driver_features |= u64::from(value) << shift;
            }
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM => {
                if let Some(q) = self.selected() {
                    q.set_size(value as u16);
                }
            }
            reg::QUEUE_READY => {
                if let Some(q) = self.selected() {
                    q.set_ready(value == 1);
                }
            }
            reg::QUEUE_NOTIFY => return self.process_queue(value as usize),
            reg::INTERRUPT_ACK => self.interrupt_status &= !value,
            reg::STATUS => self.write_status(value),
            reg::QUEUE_DESC_LOW => {
                self.set_address(value, |q, v| q.set_desc_table_address(v, None))
            }
            reg::QUEUE_DESC_HIGH => {
                self.set_address(value, |q, v| q.set_desc_table_address(None, v))
            }
            reg::QUEUE_AVAIL_LOW => {
                self.set_address(value, |q, v| q.set_avail_ring_address(v, None))
            }
            reg::QUEUE_AVAIL_HIGH => {
                self.set_address(value, |q, v| q.set_avail_ring_address(None, v))
            }
            reg::QUEUE_USED_LOW => self.set_address(value, |q, v| q.set_used_ring_address(v, None)),
            reg::QUEUE_USED_HIGH => {
                self.set_address(value, |q, v| q.set_used_ring_address(None, v))
            }
            _ => {}
        }
        Ok(())
    }
}

impl<D: VirtioDevice> MmioTransport<D> {
    fn set_address(&mut self, value: u32, set: impl FnOnce(&mut Queue, Option<u32>)) {
        if let Some(q) = self.selected() {
            set(q, Some(value));
        }
    }
}
