//! Debian's real guest kernel, as `scripts/guest.sh` leaves it in the
//! microvm data directory (ELF `vmlinux` and bzImage `vmlinuz`), loaded
//! through the VMM process's own path ([`command::parse`] then
//! [`command::build`]: devices, ACPI tables, kernel, initramfs, zero page,
//! boot vCPU) and checked in guest memory. The vCPUs never run: this host
//! may lack the hardware virtualization a Linux guest needs.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use linux_loader::loader::bootparam::boot_params;
use strata_vmm::boot::kernel::BZIMAGE_64BIT_ENTRY;
use strata_vmm::command::{self, Machine};
use strata_vmm::layout::{ACPI_START, CMDLINE_ADDR, HIMEM_START, ZERO_PAGE_ADDR};
use vm_memory::{Bytes, GuestAddress};

/// Where scripts/guest.sh puts the guest kernel.
const DATA_DIR: &str = "/var/lib/strata/microvm";
/// The command line the microvm backend gives the built-in VMM.
const CMDLINE: &str = "console=ttyS0 quiet panic=-1";
/// Guest RAM of the test VMs, the microvm class's default.
const MEMORY_MIB: u64 = 256;

/// The kernel file `name`, or `None` with the reason printed.
fn kernel(name: &str) -> Option<PathBuf> {
    let path = Path::new(DATA_DIR).join(name);
    if !path.exists() {
        println!(
            "skipped: {} is absent (scripts/guest.sh makes it)",
            path.display()
        );
        return None;
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => Some(path),
        Err(e) => {
            println!("skipped: /dev/kvm cannot be opened to build a VM: {e}");
            None
        }
    }
}

/// A VM with `kernel`, a 1 MiB patterned initramfs, a disk with serial
/// `ROOT` and a console socket, built as the VMM process builds it; also
/// returns the initramfs bytes.
fn build(kernel: &Path) -> (Machine, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let initramfs: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let initramfs_path = dir.path().join("initramfs.img");
    std::fs::File::create(&initramfs_path)
        .unwrap()
        .write_all(&initramfs)
        .unwrap();
    let disk = dir.path().join("rootfs.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let socket = dir.path().join("agent.sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    let args = command::parse([
        "--kernel".into(),
        kernel.display().to_string(),
        "--initramfs".into(),
        initramfs_path.display().to_string(),
        "--cmdline".into(),
        CMDLINE.into(),
        "--memory-mib".into(),
        MEMORY_MIB.to_string(),
        "--vcpus".into(),
        "2".into(),
        "--disk".into(),
        command::disk_arg(&disk, "ROOT"),
        "--console-socket".into(),
        socket.display().to_string(),
    ])
    .unwrap();
    (command::build(&args).unwrap(), initramfs)
}

/// The zero page's command line, initramfs, ACPI and memory fields point
/// at what was loaded, and the bytes there are the right ones.
fn check_zero_page(machine: &Machine, initramfs: &[u8]) -> boot_params {
    let memory = machine.vm.memory();
    let zp: boot_params = memory.read_obj(GuestAddress(ZERO_PAGE_ADDR)).unwrap();
    assert_eq!({ zp.hdr.boot_flag }, 0xaa55);
    assert_eq!({ zp.hdr.header }, 0x5372_6448, "HdrS");
    assert_eq!({ zp.hdr.type_of_loader }, 0xff);
    assert_eq!({ zp.hdr.cmd_line_ptr }, CMDLINE_ADDR as u32);
    assert_eq!({ zp.hdr.cmdline_size } as usize, CMDLINE.len());
    let mut line = vec![0u8; CMDLINE.len() + 1];
    memory
        .read_slice(&mut line, GuestAddress(CMDLINE_ADDR))
        .unwrap();
    assert_eq!(&line[..CMDLINE.len()], CMDLINE.as_bytes());
    assert_eq!(line[CMDLINE.len()], 0);

    let loaded = machine.kernel.initramfs.expect("initramfs loaded");
    assert_eq!({ zp.hdr.ramdisk_image }, loaded.addr as u32);
    assert_eq!({ zp.hdr.ramdisk_size }, initramfs.len() as u32);
    assert_eq!(loaded.addr % 4096, 0);
    assert!(
        loaded.addr >= machine.kernel.kernel_end,
        "initramfs over the kernel"
    );
    assert!(loaded.addr + loaded.size <= MEMORY_MIB << 20);
    let mut copy = vec![0u8; initramfs.len()];
    memory
        .read_slice(&mut copy, GuestAddress(loaded.addr))
        .unwrap();
    assert!(
        copy == initramfs,
        "the initramfs bytes differ in guest memory"
    );

    assert_eq!({ zp.acpi_rsdp_addr }, ACPI_START);
    let mut signature = [0u8; 8];
    memory
        .read_slice(&mut signature, GuestAddress(ACPI_START))
        .unwrap();
    assert_eq!(&signature, b"RSD PTR ");
    let e820: Vec<(u64, u64)> = zp.e820_table[..usize::from(zp.e820_entries)]
        .iter()
        .map(|e| (e.addr, e.size))
        .collect();
    assert_eq!(
        e820.last().copied(),
        Some((HIMEM_START, (MEMORY_MIB << 20) - HIMEM_START))
    );
    zp
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// The ELF vmlinux: the boot vCPU's entry is the ELF header's `e_entry`,
/// every loadable segment's file bytes sit at its physical address, and
/// the zero page carries a default setup header with the loader's fields.
#[test]
fn debian_vmlinux_loads_at_its_elf_entry() {
    let Some(path) = kernel("vmlinux") else {
        return;
    };
    let file = std::fs::read(&path).unwrap();
    assert_eq!(&file[..4], b"\x7fELF", "{} is not an ELF", path.display());
    assert_eq!(file[4], 2, "ELFCLASS64");
    let (machine, initramfs) = build(&path);
    let entry = u64_at(&file, 0x18);
    assert_eq!(machine.kernel.entry, GuestAddress(entry));

    let memory = machine.vm.memory();
    let (phoff, phentsize, phnum) = (
        u64_at(&file, 0x20) as usize,
        usize::from(u16_at(&file, 0x36)),
        usize::from(u16_at(&file, 0x38)),
    );
    let mut end = 0;
    let mut loads = 0;
    for i in 0..phnum {
        let ph = &file[phoff + i * phentsize..phoff + (i + 1) * phentsize];
        if u32_at(ph, 0) != 1 {
            continue; // not PT_LOAD
        }
        loads += 1;
        let (offset, paddr, filesz, memsz) = (
            u64_at(ph, 0x08) as usize,
            u64_at(ph, 0x18),
            u64_at(ph, 0x20) as usize,
            u64_at(ph, 0x28),
        );
        let len = filesz.min(4096);
        let mut got = vec![0u8; len];
        memory.read_slice(&mut got, GuestAddress(paddr)).unwrap();
        assert_eq!(got, file[offset..offset + len], "segment at {paddr:#x}");
        end = end.max(paddr + memsz);
    }
    assert!(loads > 0, "no PT_LOAD segment");
    assert!(
        (machine.kernel.entry.0..end).contains(&entry),
        "entry outside the image"
    );
    assert_eq!(machine.kernel.kernel_end, end);

    let zp = check_zero_page(&machine, &initramfs);
    assert_eq!({ zp.hdr.kernel_alignment }, 0x100_0000);
    println!(
        "vmlinux {}: entry {entry:#x}, image ends {end:#x}, initramfs at {:#x}",
        path.display(),
        machine.kernel.initramfs.unwrap().addr
    );
}

/// The bzImage: the entry is the 64-bit one, 0x200 into the protected-mode
/// code loaded at 1 MiB (the kernel says it has one in `xloadflags`), and
/// the zero page keeps the kernel's own setup header with the loader's
/// fields filled in.
#[test]
fn debian_bzimage_loads_at_its_64bit_entry() {
    let Some(path) = kernel("vmlinuz") else {
        return;
    };
    let file = std::fs::read(&path).unwrap();
    assert_eq!(u32_at(&file, 0x202), 0x5372_6448, "HdrS in the file");
    assert_eq!(u16_at(&file, 0x236) & 1, 1, "XLF_KERNEL_64");
    let (machine, initramfs) = build(&path);
    assert_eq!(
        machine.kernel.entry,
        GuestAddress(HIMEM_START + BZIMAGE_64BIT_ENTRY)
    );
    let zp = check_zero_page(&machine, &initramfs);
    assert_eq!({ zp.hdr.version }, u16_at(&file, 0x206));
    assert_eq!({ zp.hdr.code32_start }, HIMEM_START as u32);
    assert_eq!({ zp.hdr.xloadflags }, u16_at(&file, 0x236));
    assert_eq!({ zp.hdr.loadflags } & 1, 1, "LOADED_HIGH");
    let setup = (usize::from(file[0x1f1]).max(4) + 1) * 512;
    let mut head = [0u8; 512];
    machine
        .vm
        .memory()
        .read_slice(&mut head, GuestAddress(HIMEM_START))
        .unwrap();
    assert_eq!(&head[..], &file[setup..setup + 512]);
}
