//! Where the VMM puts things in the guest's physical address space.
//!
//! One place for the addresses so that the boot set-up, the devices and the
//! tests agree on them.

/// Global descriptor table used for the 64-bit entry.
pub const GDT_ADDR: u64 = 0x500;
/// Interrupt descriptor table (empty: the kernel installs its own).
pub const IDT_ADDR: u64 = 0x520;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Linux zero page (`struct boot_params`).
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Level-4 page table of the identity mapping.
pub const PML4_ADDR: u64 = 0x9000;
/// Level-3 page table of the identity mapping.
pub const PDPT_ADDR: u64 = 0xa000;
/// First of the four level-2 page tables (2 MiB pages) of the identity
/// mapping, at 0xb000..0xf000.
pub const PD_ADDR: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Largest command line, terminating NUL included.
pub const CMDLINE_MAX: usize = 0x10000;
/// End of the usable low memory (the EBDA starts here).
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables, RSDP first, in the BIOS area where guests also scan for it.
pub const ACPI_START: u64 = 0xe0000;
/// End of the ACPI area.
pub const ACPI_END: u64 = 0x10_0000;
/// Start of high memory, where kernels are loaded.
pub const HIMEM_START: u64 = 0x10_0000;
/// First virtio-mmio window; devices follow each other.
pub const MMIO_BASE: u64 = 0xd000_0000;
/// Size of one virtio-mmio window.
pub const MMIO_SIZE: u64 = 0x1000;
/// Interrupt line of the first virtio-mmio device; devices follow.
pub const MMIO_FIRST_IRQ: u32 = 5;
/// Largest guest memory: RAM stays below the virtio-mmio windows.
pub const MAX_MEMORY: u64 = 0xc000_0000;
/// Legacy serial port COM1.
pub const SERIAL_PORT: u16 = 0x3f8;
/// Interrupt line of COM1.
pub const SERIAL_IRQ: u32 = 4;
/// I/O port the guest writes its exit status to, to power the VM off.
pub const EXIT_PORT: u16 = 0xf4;
/// i8042 command port: writing [`I8042_RESET`] resets the machine.
pub const I8042_PORT: u16 = 0x64;
/// i8042 "pulse reset line" command, used by Linux for `reboot`.
pub const I8042_RESET: u8 = 0xfe;
