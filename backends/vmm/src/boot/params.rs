//! The Linux zero page (`struct boot_params`): setup header, e820 map,
//! command line and initramfs pointers.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{CMDLINE_ADDR, EBDA_START, HIMEM_START, ZERO_PAGE_ADDR};

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// `boot_flag` every valid setup header carries.
pub const BOOT_FLAG: u16 = 0xaa55;
/// `header` magic, "HdrS".
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// `type_of_loader` for a boot loader without an assigned id.
pub const LOADER_UNDEFINED: u8 = 0xff;
/// Kernel alignment used when the image has no setup header (ELF vmlinux).
pub const DEFAULT_KERNEL_ALIGNMENT: u32 = 0x100_0000;

/// Where the initramfs was put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initramfs {
    /// Guest address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Why the zero page could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    /// More RAM ranges than the zero page holds.
    #[error("e820 map of {0} entries does not fit in the zero page")]
    TooManyE820(usize),
    /// A value does not fit its 32-bit field.
    #[error("{field} = {value:#x} does not fit the 32-bit zero page field")]
    Field {
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// Writing guest memory failed.
    #[error("writing the zero page at {ZERO_PAGE_ADDR:#x}: {0}")]
    Write(vm_memory::GuestMemoryError),
}

/// The e820 map of `mem_size` bytes of RAM: low memory below the EBDA, and
/// everything from 1 MiB up.
pub fn e820_map(mem_size: u64) -> Vec<(u64, u64)> {
    vec![(0, EBDA_START), (HIMEM_START, mem_size - HIMEM_START)]
}

/// Fills the zero page from the kernel's setup header (or a default one for
/// an ELF vmlinux), the command line length, the initramfs, the ACPI RSDP
/// and the e820 map.
pub fn build(
    header: Option<setup_header>,
    cmdline_len: usize,
    initramfs: Option<Initramfs>,
    acpi_rsdp: Option<u64>,
    mem_size: u64,
) -> Result<boot_params, ParamsError> {
    let mut params = boot_params {
        hdr: header.unwrap_or_else(|| setup_header {
            kernel_alignment: DEFAULT_KERNEL_ALIGNMENT,
            ..Default::default()
        }),
        ..Default::default()
    };
    params.hdr.boot_flag = BOOT_FLAG;
    params.hdr.header = HDRS_MAGIC;
    params.hdr.type_of_loader = LOADER_UNDEFINED;
    params.hdr.cmd_line_ptr = field("cmd_line_ptr", CMDLINE_ADDR)?;
    params.hdr.cmdline_size = field("cmdline_size", cmdline_len as u64)?;
    if let Some(initramfs) = initramfs {
        params.hdr.ramdisk_image = field("ramdisk_image", initramfs.addr)?;
        params.hdr.ramdisk_size = field("ramdisk_size", initramfs.size)?;
    }
    if let Some(rsdp) = acpi_rsdp {
        params.acpi_rsdp_addr = rsdp;
    }
    let map = e820_map(mem_size);
    if map.len() > params.e820_table.len() {
        return Err(ParamsError::TooManyE820(map.len()));
    }
    for (slot, (addr, size)) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: E820_RAM,
        };
    }
    params.e820_entries = map.len() as u8;
    Ok(params)
}

/// Writes `params` at [`ZERO_PAGE_ADDR`].
pub fn write(memory: &GuestMemoryMmap, params: &boot_params) -> Result<(), ParamsError> {
    memory
        .write_obj(*params, GuestAddress(ZERO_PAGE_ADDR))
        .map_err(ParamsError::Write)
}

fn field(field: &'static str, value: u64) -> Result<u32, ParamsError> {
    u32::try_from(value).map_err(|_| ParamsError::Field { field, value })
}
