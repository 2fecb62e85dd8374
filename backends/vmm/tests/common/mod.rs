//! Helpers shared by the KVM tests: a capturing sink and tiny guests.

#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use strata_vmm::{MachineConfig, Vm};
use vm_memory::{Bytes, GuestAddress};

/// Where tiny guests' code is put and started.
pub const CODE_ADDR: u64 = 0x10_0000;

/// A `Write` whose bytes the test reads back.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// What was written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether /dev/kvm can be opened; tests print why they skip otherwise.
pub fn kvm_available() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping: /dev/kvm: {e}");
            false
        }
    }
}

/// A one-vCPU VM with 16 MiB and `code` loaded at [`CODE_ADDR`], started
/// there in 64-bit mode, with a capturing serial console.
pub fn tiny_vm(code: &[u8]) -> (Vm, Capture) {
    let mut vm = Vm::new(MachineConfig {
        memory_mib: 16,
        vcpus: 1,
    })
    .unwrap();
    let serial = Capture::default();
    vm.add_serial(Box::new(serial.clone())).unwrap();
    vm.memory()
        .write_slice(code, GuestAddress(CODE_ADDR))
        .unwrap();
    vm.start_at(GuestAddress(CODE_ADDR)).unwrap();
    (vm, serial)
}

/// `mov al, imm8; out dx, al` for each byte (dx must hold the port).
pub fn out_bytes(text: &[u8]) -> Vec<u8> {
    text.iter().flat_map(|b| [0xb0, *b, 0xee]).collect()
}

/// Guest code printing `text` on COM1 then writing `status` to the exit port.
pub fn print_and_exit(text: &[u8], status: u8) -> Vec<u8> {
    let mut code = vec![0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8
    code.extend(out_bytes(text));
    code.extend(exit(status));
    code
}

/// `mov al, status; out 0xf4, al; hlt`.
pub fn exit(status: u8) -> Vec<u8> {
    vec![0xb0, status, 0xe6, 0xf4, 0xf4]
}

/// A tiny 64-bit guest program, written instruction by instruction.
#[derive(Default)]
pub struct Asm(pub Vec<u8>);

impl Asm {
    /// `mov ebx, addr; mov dword [rbx], value`: a 32-bit store (RAM or MMIO).
    pub fn store32(&mut self, addr: u32, value: u32) -> &mut Self {
        self.0.push(0xbb); // mov ebx, imm32
        self.0.extend(addr.to_le_bytes());
        self.0.extend([0xc7, 0x03]); // mov dword [rbx], imm32
        self.0.extend(value.to_le_bytes());
        self
    }

    /// Stores a 64-bit value as two 32-bit stores.
    pub fn store64(&mut self, addr: u32, value: u64) -> &mut Self {
        self.store32(addr, value as u32)
            .store32(addr + 4, (value >> 32) as u32)
    }

    /// Stores a split-virtqueue descriptor at `table[index]`.
    pub fn descriptor(
        &mut self,
        table: u32,
        index: u32,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> &mut Self {
        let at = table + index * 16;
        self.store64(at, addr)
            .store32(at + 8, len)
            .store32(at + 12, u32::from(flags) | (u32::from(next) << 16))
    }

    /// `mov ebx, addr; mov eax, dword [rbx]`: a 32-bit load into eax.
    pub fn load32(&mut self, addr: u32) -> &mut Self {
        self.0.push(0xbb); // mov ebx, imm32
        self.0.extend(addr.to_le_bytes());
        self.0.extend([0x8b, 0x03]); // mov eax, dword [rbx]
        self
    }

    /// Sends the `n` low bytes of eax to COM1, least significant first.
    pub fn emit_eax(&mut self, n: usize) -> &mut Self {
        self.0.extend([0x66, 0xba, 0xf8, 0x03]); // mov dx, 0x3f8
        for _ in 0..n {
            self.0.push(0xee); // out dx, al
            self.0.extend([0xc1, 0xe8, 0x08]); // shr eax, 8
        }
        self
    }

    /// Loads the 32-bit value at `addr` and sends its `n` low bytes to COM1.
    pub fn report(&mut self, addr: u32, n: usize) -> &mut Self {
        self.load32(addr).emit_eax(n)
    }

    /// Powers off with `status`.
    pub fn exit(&mut self, status: u8) -> Vec<u8> {
        self.0.extend(exit(status));
        self.0.clone()
    }
}

/// A minimal ELF64 executable with one PT_LOAD segment holding `code` at
/// physical and virtual address `addr`, entry at `addr`.
pub fn elf_with(code: &[u8], addr: u64) -> Vec<u8> {
    const CODE_OFFSET: u64 = 0x1000;
    let mut f = Vec::new();
    f.extend(b"\x7fELF");
    f.extend([2, 1, 1, 0]); // 64-bit, little endian, version 1, SysV ABI
    f.extend([0; 8]); // padding
    f.extend(2u16.to_le_bytes()); // e_type: EXEC
    f.extend(62u16.to_le_bytes()); // e_machine: x86-64
    f.extend(1u32.to_le_bytes()); // e_version
    f.extend(addr.to_le_bytes()); // e_entry
    f.extend(64u64.to_le_bytes()); // e_phoff
    f.extend(0u64.to_le_bytes()); // e_shoff
    f.extend(0u32.to_le_bytes()); // e_flags
    f.extend(64u16.to_le_bytes()); // e_ehsize
    f.extend(56u16.to_le_bytes()); // e_phentsize
    f.extend(1u16.to_le_bytes()); // e_phnum
    f.extend(64u16.to_le_bytes()); // e_shentsize
    f.extend(0u16.to_le_bytes()); // e_shnum
    f.extend(0u16.to_le_bytes()); // e_shstrndx
    f.extend(1u32.to_le_bytes()); // p_type: PT_LOAD
    f.extend(5u32.to_le_bytes()); // p_flags: R+X
    f.extend(CODE_OFFSET.to_le_bytes()); // p_offset
    f.extend(addr.to_le_bytes()); // p_vaddr
    f.extend(addr.to_le_bytes()); // p_paddr
    f.extend((code.len() as u64).to_le_bytes()); // p_filesz
    f.extend((code.len() as u64).to_le_bytes()); // p_memsz
    f.extend(0x1000u64.to_le_bytes()); // p_align
    f.resize(CODE_OFFSET as usize, 0);
    f.extend(code);
    f
}

/// virtio-mmio register offsets used by the tiny guests.
pub mod mmio_reg {
    pub const STATUS: u32 = 0x70;
    pub const QUEUE_SEL: u32 = 0x30;
    pub const QUEUE_NUM: u32 = 0x38;
    pub const QUEUE_READY: u32 = 0x44;
    pub const QUEUE_NOTIFY: u32 = 0x50;
    pub const QUEUE_DESC_LOW: u32 = 0x80;
    pub const QUEUE_AVAIL_LOW: u32 = 0x90;
    pub const QUEUE_USED_LOW: u32 = 0xa0;
    pub const DRIVER_FEATURES: u32 = 0x20;
    pub const DRIVER_FEATURES_SEL: u32 = 0x24;
}

impl Asm {
    /// Sets up queue `queue` of the device at `base` with 8 entries at
    /// the given ring addresses and makes it ready.
    pub fn setup_queue(
        &mut self,
        base: u32,
        queue: u32,
        desc: u32,
        avail: u32,
        used: u32,
    ) -> &mut Self {
        use mmio_reg::*;
        self.store32(base + QUEUE_SEL, queue)
            .store32(base + QUEUE_NUM, 8)
            .store32(base + QUEUE_DESC_LOW, desc)
            .store32(base + QUEUE_AVAIL_LOW, avail)
            .store32(base + QUEUE_USED_LOW, used)
            .store32(base + QUEUE_READY, 1)
    }

    /// Spins until the 32-bit value at `addr` equals `value`.
    pub fn wait_for(&mut self, addr: u32, value: u32) -> &mut Self {
        self.0.push(0xbb); // mov ebx, addr
        self.0.extend(addr.to_le_bytes());
        self.0.extend([0x8b, 0x03]); // again: mov eax, [rbx]
        self.0.push(0x3d); // cmp eax, imm32
        self.0.extend(value.to_le_bytes());
        self.0.extend([0x75, 0xf7]); // jne again (-9)
        self
    }
}
