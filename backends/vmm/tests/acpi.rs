//! ACPI tables: layout, checksums and contents checked byte by byte, as a
//! guest's ACPI parser reads them.

use strata_vmm::acpi::{self, IOAPIC_ADDR, LAPIC_ADDR};
use strata_vmm::layout::{ACPI_END, ACPI_START};
use strata_vmm::memory;
use strata_vmm::vm::MmioSlot;
use vm_memory::{Bytes, GuestAddress};

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
}

const SLOTS: [MmioSlot; 2] = [
    MmioSlot {
        base: 0xd000_0000,
        irq: 5,
    },
    MmioSlot {
        base: 0xd000_1000,
        irq: 6,
    },
];

/// RSDP → XSDT → FADT/MADT, FADT → DSDT; every checksum is valid, every
/// length field matches, tables are 16-byte aligned, disjoint and inside
/// the ACPI area.
#[test]
fn layout_and_checksums() {
    let t = acpi::build(2, &SLOTS).unwrap();
    let (rsdp_addr, rsdp) = t.get("RSDP").unwrap();
    assert_eq!(rsdp_addr, ACPI_START);
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(rsdp.len(), 36);
    assert_eq!(sum(&rsdp[..20]), 0, "RSDP checksum");
    assert_eq!(sum(rsdp), 0, "RSDP extended checksum");
    assert_eq!(rsdp[15], 2, "revision");
    assert_eq!(u32_at(rsdp, 20), 36, "length");

    for sig in ["DSDT", "FACP", "APIC", "XSDT"] {
        let (addr, b) = t.get(sig).unwrap();
        assert_eq!(&b[..4], sig.as_bytes());
        assert_eq!(u32_at(b, 4) as usize, b.len(), "{sig} length");
        assert_eq!(sum(b), 0, "{sig} checksum");
        assert_eq!(&b[10..16], b"STRATA");
        assert_eq!(addr % 16, 0, "{sig} alignment");
        assert!(addr >= ACPI_START + 36 && addr + b.len() as u64 <= ACPI_END);
    }
    let mut spans: Vec<(u64, u64)> = t
        .tables
        .iter()
        .map(|(_, a, b)| (*a, *a + b.len() as u64))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "tables overlap: {spans:x?}");
    }

    let (xsdt_addr, xsdt) = t.get("XSDT").unwrap();
    assert_eq!(u64_at(rsdp, 24), xsdt_addr);
    assert_eq!(xsdt.len(), 36 + 16);
    assert_eq!(u64_at(xsdt, 36), t.get("FACP").unwrap().0);
    assert_eq!(u64_at(xsdt, 44), t.get("APIC").unwrap().0);

    let (_, fadt) = t.get("FACP").unwrap();
    assert_eq!(u64_at(fadt, 140), t.get("DSDT").unwrap().0, "X_DSDT");
    assert_ne!(u32_at(fadt, 112) & (1 << 20), 0, "HW_REDUCED_ACPI");
    assert_eq!(
        u16::from_le_bytes([fadt[109], fadt[110]]),
        0b10_1100,
        "IAPC_BOOT_ARCH"
    );
}

/// The MADT lists one enabled local APIC per vCPU and the I/O APIC.
#[test]
fn madt_lists_cpus_and_ioapic() {
    let t = acpi::build(3, &SLOTS).unwrap();
    let (_, madt) = t.get("APIC").unwrap();
    assert_eq!(u32_at(madt, 36), LAPIC_ADDR);
    let mut off = 44;
    let mut cpus = Vec::new();
    let mut ioapics = Vec::new();
    while off < madt.len() {
        let (kind, len) = (madt[off], madt[off + 1] as usize);
        match kind {
            0 => {
                assert_eq!(len, 8);
                assert_eq!(u32_at(madt, off + 4) & 1, 1, "enabled");
                cpus.push((madt[off + 2], madt[off + 3]));
            }
            1 => {
                assert_eq!(len, 12);
                ioapics.push((madt[off + 2], u32_at(madt, off + 4), u32_at(madt, off + 8)));
            }
            other => panic!("unexpected MADT structure {other}"),
        }
        off += len;
    }
    assert_eq!(off, madt.len());
    assert_eq!(cpus, [(0, 0), (1, 1), (2, 2)]);
    assert_eq!(ioapics, [(3, IOAPIC_ADDR, 0)]);
}

/// The DSDT declares each virtio-mmio window as an LNRO0005 device whose
/// _CRS holds its 4 KiB memory window and its edge-triggered interrupt.
#[test]
fn dsdt_declares_virtio_mmio_devices() {
    let t = acpi::build(1, &SLOTS).unwrap();
    let (_, dsdt) = t.get("DSDT").unwrap();
    let find = |needle: &[u8]| dsdt.windows(needle.len()).filter(|w| *w == needle).count();
    assert_eq!(find(b"LNRO0005\0"), 2);
    assert_eq!(find(b"V000"), 1);
    assert_eq!(find(b"V001"), 1);
    for slot in SLOTS {
        // Memory32Fixed: tag 0x86, length 9, read-write, base, length.
        let mut mem = vec![0x86, 0x09, 0x00, 0x01];
        mem.extend((slot.base as u32).to_le_bytes());
        mem.extend(0x1000u32.to_le_bytes());
        assert_eq!(find(&mem), 1, "window {:#x}", slot.base);
        // Extended interrupt: tag 0x89, length 6, consumer + edge, 1 irq.
        let mut irq = vec![0x89, 0x06, 0x00, 0x03, 0x01];
        irq.extend(slot.irq.to_le_bytes());
        assert_eq!(find(&irq), 1, "irq {}", slot.irq);
    }
}

/// The tables land in guest memory at their addresses.
#[test]
fn written_to_guest_memory() {
    let mem = memory::create(16 << 20).unwrap();
    let t = acpi::build(1, &SLOTS).unwrap();
    assert_eq!(acpi::write(&mem, &t).unwrap(), ACPI_START);
    for (sig, addr, bytes) in &t.tables {
        let mut got = vec![0u8; bytes.len()];
        mem.read_slice(&mut got, GuestAddress(*addr)).unwrap();
        assert_eq!(&got, bytes, "{sig}");
    }
}
