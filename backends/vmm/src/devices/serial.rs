//! The 8250 UART on COM1 (vm-superio), the guest's early console: what the
//! guest writes to it goes to the VMM's console sink.

use std::io::{self, Write};

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::layout::SERIAL_PORT;

/// Number of I/O ports the UART decodes.
pub const PORT_COUNT: u16 = 8;

/// Raises the UART's interrupt line through a KVM irqfd.
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Why a guest access to the UART failed.
#[derive(Debug, thiserror::Error)]
#[error("serial port write of {value:#04x} at offset {offset}: {source:?}")]
pub struct SerialError {
    /// Register offset from the base port.
    pub offset: u8,
    /// Value written.
    pub value: u8,
    /// Underlying error.
    pub source: vm_superio::serial::Error<io::Error>,
}

/// COM1 with its interrupt and output sink.
pub struct SerialConsole {
    uart: Serial<IrqTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
}

impl SerialConsole {
    /// A UART that raises `irq` and writes the guest's output to `out`.
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> SerialConsole {
        SerialConsole {
            uart: Serial::new(IrqTrigger(irq), out),
        }
    }

    /// Whether `port` belongs to the UART.
    pub fn owns(port: u16) -> bool {
        (SERIAL_PORT..SERIAL_PORT + PORT_COUNT).contains(&port)
    }

    /// Guest read of `port`.
    pub fn read(&mut self, port: u16) -> u8 {
        self.uart.read((port - SERIAL_PORT) as u8)
    }

    /// Guest write of `value` to `port`.
    pub fn write(&mut self, port: u16, value: u8) -> Result<(), SerialError> {
        let offset = (port - SERIAL_PORT) as u8;
        self.uart
            .write(offset, value)
            .map_err(|source| SerialError {
                offset,
                value,
                source,
            })
    }
}
