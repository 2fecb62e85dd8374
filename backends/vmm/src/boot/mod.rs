//! Everything written into guest memory before the first instruction runs:
//! the kernel and initramfs, the command line, the zero page, and the
//! page tables and GDT of the 64-bit entry.

pub mod gdt;
pub mod kernel;
pub mod paging;
pub mod params;

pub use kernel::{load_kernel, BootError, LoadedKernel};
