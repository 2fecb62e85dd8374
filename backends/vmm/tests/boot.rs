//! Boot set-up checked byte by byte in guest memory: page tables, GDT,
//! zero page, command line, initramfs, and the ELF and bzImage loaders.

mod common;

use std::io::Write;
use std::path::Path;

use linux_loader::loader::bootparam::boot_params;
use strata_vmm::boot::{gdt, load_kernel, paging, params};
use strata_vmm::layout::*;
use strata_vmm::memory;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

fn ram(mib: u64) -> GuestMemoryMmap {
    memory::create(mib << 20).unwrap()
}

fn read_u64(mem: &GuestMemoryMmap, addr: u64) -> u64 {
    mem.read_obj(GuestAddress(addr)).unwrap()
}

/// The identity map points PML4 → PDPT → four PDs of 2 MiB pages covering
/// 0..4 GiB, each entry present, writable and mapping its own address.
#[test]
fn identity_page_tables() {
    let mem = ram(16);
    assert_eq!(paging::write_identity_tables(&mem).unwrap(), PML4_ADDR);
    assert_eq!(read_u64(&mem, PML4_ADDR), PDPT_ADDR | 3);
    for gib in 0..4u64 {
        let pd = PD_ADDR + gib * 0x1000;
        assert_eq!(read_u64(&mem, PDPT_ADDR + gib * 8), pd | 3);
        assert_eq!(read_u64(&mem, pd), (gib << 30) | 0x83);
        assert_eq!(
            read_u64(&mem, pd + 511 * 8),
            (gib << 30) | (511 << 21) | 0x83
        );
    }
    // MMIO windows are mapped 1:1 too.
    let mmio_pd = PD_ADDR + (MMIO_BASE >> 30) * 0x1000;
    let entry = read_u64(&mem, mmio_pd + ((MMIO_BASE >> 21) & 511) * 8);
    assert_eq!(entry, MMIO_BASE | 0x83);
}

/// The GDT holds the well-known descriptors, and the segment registers
/// derived from them say 64-bit code / flat data.
#[test]
fn gdt_and_segments() {
    let mem = ram(16);
    gdt::write_tables(&mem).unwrap();
    assert_eq!(read_u64(&mem, GDT_ADDR), 0);
    assert_eq!(read_u64(&mem, GDT_ADDR + 8), 0x00af_9b00_0000_ffff);
    assert_eq!(read_u64(&mem, GDT_ADDR + 16), 0x00cf_9300_0000_ffff);
    assert_eq!(read_u64(&mem, GDT_ADDR + 24), 0x008f_8b00_0000_ffff);
    assert_eq!(read_u64(&mem, IDT_ADDR), 0);
    let code = gdt::segment(gdt::CODE64, 8);
    assert_eq!(
        (code.l, code.db, code.g, code.present, code.type_),
        (1, 0, 1, 1, 0xb)
    );
    assert_eq!((code.base, code.limit, code.selector), (0, 0xffff_ffff, 8));
    let data = gdt::segment(gdt::DATA, 0x10);
    assert_eq!((data.l, data.db, data.s, data.type_), (0, 1, 1, 3));
}

/// Loading the tiny ELF puts its segment at p_paddr, enters at e_entry,
/// and writes the command line, initramfs (page-aligned at the top of RAM)
/// and a zero page with a default setup header and the e820 map.
#[test]
fn elf_kernel_cmdline_initramfs_and_zero_page() {
    let mem = ram(32);
    let code = [0xf4u8, 0x90, 0x90, 0xf4];
    let mut kernel = tempfile::NamedTempFile::new().unwrap();
    kernel
        .write_all(&common::elf_with(&code, 0x20_0000))
        .unwrap();
    let mut initramfs = tempfile::NamedTempFile::new().unwrap();
    initramfs.write_all(&[0x5a; 10_000]).unwrap();
    let cmdline = strata_vmm::boot::kernel::cmdline("console=ttyS0 panic=-1").unwrap();
    let loaded = load_kernel(
        &mem,
        kernel.path(),
        Some(initramfs.path()),
        &cmdline,
        Some(ACPI_START),
    )
    .unwrap();

    assert_eq!(loaded.entry, GuestAddress(0x20_0000));
    let mut got = [0u8; 4];
    mem.read_slice(&mut got, GuestAddress(0x20_0000)).unwrap();
    assert_eq!(got, code);

    let initrd = loaded.initramfs.unwrap();
    assert_eq!(initrd.size, 10_000);
    assert_eq!(initrd.addr % 4096, 0);
    assert_eq!(initrd.addr, ((32 << 20) - 10_000) & !0xfff);
    let mut buf = vec![0u8; 10_000];
    mem.read_slice(&mut buf, GuestAddress(initrd.addr)).unwrap();
    assert!(buf.iter().all(|b| *b == 0x5a));

    let mut line = vec![0u8; 23];
    mem.read_slice(&mut line, GuestAddress(CMDLINE_ADDR))
        .unwrap();
    assert_eq!(&line, b"console=ttyS0 panic=-1\0");

    let zp: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
    assert_eq!({ zp.hdr.boot_flag }, 0xaa55);
    assert_eq!({ zp.hdr.header }, 0x5372_6448);
    assert_eq!({ zp.hdr.type_of_loader }, 0xff);
    assert_eq!({ zp.hdr.kernel_alignment }, 0x100_0000);
    assert_eq!({ zp.hdr.cmd_line_ptr }, CMDLINE_ADDR as u32);
    assert_eq!({ zp.hdr.cmdline_size }, 22);
    assert_eq!({ zp.hdr.ramdisk_image }, initrd.addr as u32);
    assert_eq!({ zp.hdr.ramdisk_size }, 10_000);
    assert_eq!(zp.e820_entries, 2);
    let e0 = zp.e820_table[0];
    let e1 = zp.e820_table[1];
    assert_eq!(
        ({ e0.addr }, { e0.size }, { e0.r#type }),
        (0, EBDA_START, 1)
    );
    assert_eq!(
        ({ e1.addr }, { e1.size }, { e1.r#type }),
        (HIMEM_START, (32 << 20) - HIMEM_START, 1)
    );
    // Raw offsets of the boot protocol, independent of the struct binding.
    let raw = |off: u64| -> u32 { mem.read_obj(GuestAddress(ZERO_PAGE_ADDR + off)).unwrap() };
    assert_eq!(raw(0x228), CMDLINE_ADDR as u32); // cmd_line_ptr
    assert_eq!(raw(0x218), initrd.addr as u32); // ramdisk_image
    assert_eq!(raw(0x21c), 10_000); // ramdisk_size
    assert_eq!(raw(0x1e8) & 0xff, 2); // e820_entries
    assert_eq!(raw(0x070), ACPI_START as u32); // acpi_rsdp_addr
    assert_eq!({ zp.acpi_rsdp_addr }, ACPI_START);
}

/// An initramfs that does not fit above the kernel is refused with a
/// message naming the file and size.
#[test]
fn initramfs_too_large_is_refused() {
    let mem = ram(4);
    let mut kernel = tempfile::NamedTempFile::new().unwrap();
    kernel
        .write_all(&common::elf_with(&[0xf4], 0x20_0000))
        .unwrap();
    let initramfs = tempfile::NamedTempFile::new().unwrap();
    initramfs.as_file().set_len(4 << 20).unwrap();
    let cmdline = strata_vmm::boot::kernel::cmdline("").unwrap();
    let err = load_kernel(&mem, kernel.path(), Some(initramfs.path()), &cmdline, None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("does not fit") && msg.contains("4194304"),
        "{msg}"
    );
}

/// The Debian bzImage loads at 1 MiB with the 64-bit entry 0x200 further,
/// and its own setup header (protocol version, loadflags) is kept in the
/// zero page with the loader's fields set.
#[test]
fn bzimage_kernel_loads() {
    let path = Path::new("/var/lib/strata/microvm/vmlinuz");
    if !path.exists() {
        eprintln!("skipping: {} is absent", path.display());
        return;
    }
    let mem = ram(128);
    let cmdline = strata_vmm::boot::kernel::cmdline("console=ttyS0").unwrap();
    let loaded = load_kernel(&mem, path, None, &cmdline, None).unwrap();
    assert_eq!(loaded.entry, GuestAddress(HIMEM_START + 0x200));
    let zp: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
    assert_eq!({ zp.hdr.header }, params::HDRS_MAGIC);
    assert!({ zp.hdr.version } >= 0x020c, "protocol {:#x}", {
        zp.hdr.version
    });
    assert_eq!({ zp.hdr.loadflags } & 1, 1, "LOADED_HIGH");
    assert_eq!({ zp.hdr.type_of_loader }, 0xff);
    assert_eq!({ zp.hdr.code32_start }, HIMEM_START as u32);
    // The compressed kernel follows the setup sectors in the file.
    let file = std::fs::read(path).unwrap();
    let setup = (usize::from(file[0x1f1]).max(4) + 1) * 512;
    let mut head = [0u8; 64];
    mem.read_slice(&mut head, GuestAddress(HIMEM_START))
        .unwrap();
    assert_eq!(&head[..], &file[setup..setup + 64]);
    assert_eq!(loaded.kernel_end, HIMEM_START + (file.len() - setup) as u64);
}

/// Memory sizes that are zero, unaligned or overlap the MMIO windows are
/// refused.
#[test]
fn memory_size_is_validated() {
    assert!(memory::create(0).is_err());
    assert!(memory::create(4097).is_err());
    assert!(memory::create(MAX_MEMORY + 4096).is_err());
}
