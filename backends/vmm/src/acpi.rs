//! ACPI tables describing the machine to the guest: the vCPUs and the I/O
//! APIC (MADT), the virtio-mmio devices as `LNRO0005` devices (DSDT), and
//! a hardware-reduced FADT, reached from the RSDP through the XSDT.
//!
//! Without them a guest sees one CPU and must be told about each
//! virtio-mmio device on its command line.

use acpi_tables::aml::{Device, Interrupt, Memory32Fixed, Name, Path, ResourceTemplate, Scope};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{ACPI_END, ACPI_START, MMIO_SIZE};
use crate::vm::MmioSlot;

/// OEM id in every table header.
pub const OEM_ID: [u8; 6] = *b"STRATA";
/// OEM table id in every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"STRATAVM";
/// Local APIC base address.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// I/O APIC base address.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// IA-PC boot architecture flags: no VGA, no MSI, no CMOS RTC.
const IAPC_BOOT_ARCH: u16 = (1 << 2) | (1 << 3) | (1 << 5);
/// Table alignment.
const ALIGN: u64 = 16;

/// Why the tables could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// The tables do not fit their area.
    #[error("ACPI tables end at {end:#x}, past the ACPI area end {ACPI_END:#x}")]
    TooLarge {
        /// Where they would end.
        end: u64,
    },
    /// Writing guest memory failed.
    #[error("writing ACPI table {table} at {addr:#x}: {source}")]
    Write {
        /// Table signature.
        table: &'static str,
        /// Guest address.
        addr: u64,
        /// Underlying error.
        source: vm_memory::GuestMemoryError,
    },
}

/// The serialized tables, ready to be copied at their addresses.
#[derive(Debug, Clone)]
pub struct Tables {
    /// (signature, guest address, bytes), RSDP first.
    pub tables: Vec<(&'static str, u64, Vec<u8>)>,
}

impl Tables {
    /// The table with `signature`.
    pub fn get(&self, signature: &str) -> Option<(u64, &[u8])> {
        self.tables
            .iter()
            .find(|(s, _, _)| *s == signature)
            .map(|(_, addr, bytes)| (*addr, bytes.as_slice()))
    }
}

/// Builds the tables for `vcpus` vCPUs and the virtio-mmio `devices`, laid
/// out from [`ACPI_START`] with the RSDP first.
pub fn build(vcpus: u8, devices: &[MmioSlot]) -> Result<Tables, AcpiError> {
    let mut next = ACPI_START + Rsdp::len() as u64;
    let mut place = |len: usize| {
        let addr = next.div_ceil(ALIGN) * ALIGN;
        next = addr + len as u64;
        addr
    };
    let dsdt = dsdt(devices);
    let dsdt_addr = place(dsdt.len());

    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, 1)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    let fadt = to_bytes(&fadt.finalize());
    let fadt_addr = place(fadt.len());

    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        1,
        LocalInterruptController::Address(LAPIC_ADDR),
    );
    for cpu in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(vcpus, IOAPIC_ADDR, 0));
    let madt = to_bytes(&madt);
    let madt_addr = place(madt.len());

    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, 1);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt = to_bytes(&xsdt);
    let xsdt_addr = place(xsdt.len());

    let end = next;
    if end > ACPI_END {
        return Err(AcpiError::TooLarge { end });
    }
    let rsdp = to_bytes(&Rsdp::new(OEM_ID, xsdt_addr));
    Ok(Tables {
        tables: vec![
            ("RSDP", ACPI_START, rsdp),
            ("DSDT", dsdt_addr, dsdt),
            ("FACP", fadt_addr, fadt),
            ("APIC", madt_addr, madt),
            ("XSDT", xsdt_addr, xsdt),
        ],
    })
}

/// Copies `tables` into guest memory and returns the RSDP address.
pub fn write(memory: &GuestMemoryMmap, tables: &Tables) -> Result<u64, AcpiError> {
    for (table, addr, bytes) in &tables.tables {
        memory
            .write_slice(bytes, GuestAddress(*addr))
            .map_err(|source| AcpiError::Write {
                table,
                addr: *addr,
                source,
            })?;
    }
    Ok(ACPI_START)
}

/// DSDT with one `LNRO0005` device per virtio-mmio window under `\_SB`.
fn dsdt(devices: &[MmioSlot]) -> Vec<u8> {
    let mut sdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, 1);
    let mut body = Vec::new();
    for (n, slot) in (0u32..).zip(devices) {
        device_aml(n, slot, &mut body);
    }
    let children: Vec<&dyn Aml> = body.iter().map(|d| d as &dyn Aml).collect();
    Scope::new(Path::new("\\_SB_"), children).to_aml_bytes(&mut sdt);
    sdt.update_checksum();
    sdt.as_slice().to_vec()
}

/// One device's AML, serialized (the AML builders borrow their parts).
struct RawAml(Vec<u8>);

impl Aml for RawAml {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}

fn device_aml(n: u32, slot: &MmioSlot, out: &mut Vec<RawAml>) {
    let window = Memory32Fixed::new(true, slot.base as u32, MMIO_SIZE as u32);
    let irq = Interrupt::new(true, true, false, false, slot.irq);
    let crs = ResourceTemplate::new(vec![&window, &irq]);
    let hid = Name::new(Path::new("_HID"), &"LNRO0005");
    let uid = Name::new(Path::new("_UID"), &n);
    let crs = Name::new(Path::new("_CRS"), &crs);
    let name = format!("V{n:03X}");
    let device = Device::new(Path::new(&name), vec![&hid, &uid, &crs]);
    let mut bytes = Vec::new();
    device.to_aml_bytes(&mut bytes);
    out.push(RawAml(bytes));
}

fn to_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}
