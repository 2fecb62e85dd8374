//! Loading a kernel (ELF vmlinux or bzImage), its initramfs and command
//! line, and writing the zero page that describes them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::Elf;
use linux_loader::loader::{load_cmdline, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::params::{self, Initramfs, ParamsError};
use crate::layout::{CMDLINE_ADDR, CMDLINE_MAX, HIMEM_START};

/// Offset of the 64-bit entry point from the start of a bzImage's
/// protected-mode code.
pub const BZIMAGE_64BIT_ENTRY: u64 = 0x200;
/// Highest initramfs address when the setup header does not say.
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
/// Initramfs alignment.
const PAGE_SIZE: u64 = 4096;

/// Why the guest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A file could not be opened or read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// linux-loader rejected the kernel.
    #[error("loading kernel {path}: {source}")]
    Kernel {
        /// The kernel image.
        path: PathBuf,
        /// Underlying error.
        source: linux_loader::loader::Error,
    },
    /// The initramfs does not fit between the kernel and the top of RAM.
    #[error("initramfs {path} ({size} bytes) does not fit in guest memory above the kernel end {kernel_end:#x}")]
    InitramfsTooLarge {
        /// The initramfs.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// End of the loaded kernel.
        kernel_end: u64,
    },
    /// Copying the initramfs into guest memory failed.
    #[error("copying initramfs {path} to {addr:#x}: {source}")]
    InitramfsCopy {
        /// The initramfs.
        path: PathBuf,
        /// Guest address.
        addr: u64,
        /// Underlying error.
        source: vm_memory::GuestMemoryError,
    },
    /// The command line is invalid or too long.
    #[error("kernel command line {cmdline:?}: {source}")]
    Cmdline {
        /// The command line.
        cmdline: String,
        /// Underlying error.
        source: linux_loader::cmdline::Error,
    },
    /// The command line could not be written.
    #[error("writing the kernel command line at {CMDLINE_ADDR:#x}: {0}")]
    CmdlineWrite(linux_loader::loader::Error),
    /// The zero page could not be written.
    #[error(transparent)]
    Params(#[from] ParamsError),
}

/// What the boot vCPU needs to start the loaded kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadedKernel {
    /// 64-bit entry point.
    pub entry: GuestAddress,
    /// End of the kernel image in guest memory.
    pub kernel_end: u64,
    /// Where the initramfs went, if there is one.
    pub initramfs: Option<Initramfs>,
}

/// Loads `kernel` (ELF or bzImage, told apart by the ELF magic), then the
/// initramfs at the top of the memory the kernel can reach, the command
/// line, and the zero page (pointing at the ACPI RSDP if there is one).
pub fn load_kernel(
    memory: &GuestMemoryMmap,
    kernel: &Path,
    initramfs: Option<&Path>,
    cmdline: &Cmdline,
    acpi_rsdp: Option<u64>,
) -> Result<LoadedKernel, BootError> {
    let read_err = |source| BootError::Read {
        path: kernel.to_path_buf(),
        source,
    };
    let mut file = File::open(kernel).map_err(read_err)?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(read_err)?;
    file.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let kernel_err = |source| BootError::Kernel {
        path: kernel.to_path_buf(),
        source,
    };
    let (loaded, entry) = if magic == *b"\x7fELF" {
        let loaded = Elf::load(memory, None, &mut file, Some(GuestAddress(HIMEM_START)))
            .map_err(kernel_err)?;
        let entry = loaded.kernel_load;
        (loaded, entry)
    } else {
        let loaded = BzImage::load(memory, None, &mut file, Some(GuestAddress(HIMEM_START)))
            .map_err(kernel_err)?;
        let entry = GuestAddress(loaded.kernel_load.0 + BZIMAGE_64BIT_ENTRY);
        (loaded, entry)
    };

    let mem_size = memory.last_addr().0 + 1;
    let initramfs = match initramfs {
        Some(path) => Some(load_initramfs(
            memory,
            path,
            loaded.kernel_end,
            loaded.setup_header.map(|h| u64::from(h.initrd_addr_max)),
            mem_size,
        )?),
        None => None,
    };

    let cmdline_len = cmdline
        .as_cstring()
        .map_err(|source| BootError::Cmdline {
            cmdline: format!("{cmdline:?}"),
            source,
        })?
        .as_bytes()
        .len();
    load_cmdline(memory, GuestAddress(CMDLINE_ADDR), cmdline).map_err(BootError::CmdlineWrite)?;
    let params = params::build(
        loaded.setup_header,
        cmdline_len,
        initramfs,
        acpi_rsdp,
        mem_size,
    )?;
    params::write(memory, &params)?;
    Ok(LoadedKernel {
        entry,
        kernel_end: loaded.kernel_end,
        initramfs,
    })
}

/// Parses `text` into a command line with room for [`CMDLINE_MAX`] bytes.
pub fn cmdline(text: &str) -> Result<Cmdline, BootError> {
    let err = |source| BootError::Cmdline {
        cmdline: text.to_string(),
        source,
    };
    let mut cmdline = Cmdline::new(CMDLINE_MAX).map_err(err)?;
    if !text.is_empty() {
        cmdline.insert_str(text).map_err(err)?;
    }
    Ok(cmdline)
}

fn load_initramfs(
    memory: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
    addr_max: Option<u64>,
    mem_size: u64,
) -> Result<Initramfs, BootError> {
    let read_err = |source| BootError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    let addr_max = match addr_max {
        Some(max) if max != 0 => max,
        _ => DEFAULT_INITRD_ADDR_MAX,
    };
    let top = mem_size.min(addr_max + 1);
    let too_large = || BootError::InitramfsTooLarge {
        path: path.to_path_buf(),
        size,
        kernel_end,
    };
    let addr = top.checked_sub(size).ok_or_else(too_large)? & !(PAGE_SIZE - 1);
    if addr < kernel_end {
        return Err(too_large());
    }
    let len = usize::try_from(size).map_err(|_| too_large())?;
    memory
        .read_exact_volatile_from(GuestAddress(addr), &mut file, len)
        .map_err(|source| BootError::InitramfsCopy {
            path: path.to_path_buf(),
            addr,
            source,
        })?;
    Ok(Initramfs { addr, size })
}
