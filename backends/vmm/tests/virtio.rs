//! virtio-mmio devices driven by tiny guests under real KVM: the guest
//! probes the transport registers, negotiates features, sets up a queue in
//! its own memory, posts descriptor chains and reads the used ring back.

mod common;

use std::io::Write;

use common::{kvm_available, tiny_vm, Asm, Capture};
use strata_vmm::devices::virtio::block::Block;
use strata_vmm::devices::virtio::console::Console;
use strata_vmm::devices::virtio::mmio::reg;
use strata_vmm::VmExit;

/// Guest addresses of the queue the guest sets up.
const DESC: u32 = 0x20_0000;
const AVAIL: u32 = 0x20_1000;
const USED: u32 = 0x20_2000;
const BUF: u32 = 0x20_3000;
const NEXT: u16 = 1;
const WRITE: u16 = 2;

/// Probes the device at `base` (magic, version, device id, high feature
/// word reported on COM1), negotiates VERSION_1 and reports the status, then
/// sets up queue `queue` with 8 entries and reports its maximum size.
fn probe_and_setup(asm: &mut Asm, base: u32, queue: u32) {
    let r = |off: u64| base + off as u32;
    asm.report(r(reg::MAGIC), 4)
        .report(r(reg::VERSION), 4)
        .report(r(reg::DEVICE_ID), 4)
        .store32(r(reg::STATUS), 1)
        .store32(r(reg::STATUS), 3)
        .store32(r(reg::DEVICE_FEATURES_SEL), 1)
        .report(r(reg::DEVICE_FEATURES), 4)
        .store32(r(reg::DRIVER_FEATURES_SEL), 1)
        .store32(r(reg::DRIVER_FEATURES), 1)
        .store32(r(reg::DRIVER_FEATURES_SEL), 0)
        .store32(r(reg::DRIVER_FEATURES), 0)
        .store32(r(reg::STATUS), 0xb)
        .report(r(reg::STATUS), 1)
        .store32(r(reg::QUEUE_SEL), queue)
        .report(r(reg::QUEUE_NUM_MAX), 2)
        .store32(r(reg::QUEUE_NUM), 8)
        .store32(r(reg::QUEUE_DESC_LOW), DESC)
        .store32(r(reg::QUEUE_DESC_HIGH), 0)
        .store32(r(reg::QUEUE_AVAIL_LOW), AVAIL)
        .store32(r(reg::QUEUE_AVAIL_HIGH), 0)
        .store32(r(reg::QUEUE_USED_LOW), USED)
        .store32(r(reg::QUEUE_USED_HIGH), 0)
        .store32(r(reg::QUEUE_READY), 1)
        .store32(r(reg::STATUS), 0xf);
}

/// What [`probe_and_setup`] reports for a device with `id`, high feature
/// word `features_hi` and queue size 256.
fn probe_report(id: u32, features_hi: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(0x7472_6976u32.to_le_bytes());
    v.extend(2u32.to_le_bytes());
    v.extend(id.to_le_bytes());
    v.extend(features_hi.to_le_bytes());
    v.push(0xb);
    v.extend(256u16.to_le_bytes());
    v
}

/// virtio-console: a one-descriptor chain on the transmit queue reaches the
/// host sink, the used ring and interrupt status say so.
#[test]
fn console_transmit_through_virtqueue() {
    if !kvm_available() {
        return;
    }
    let mut asm = Asm::default();
    let base = 0xd000_0000u32;
    // Post the buffer before the device is live, so one notify does it all.
    asm.store32(BUF, u32::from_le_bytes(*b"ping"))
        .store32(BUF + 4, u32::from(b'\n'))
        .descriptor(DESC, 0, u64::from(BUF), 5, 0, 0)
        .store32(AVAIL + 4, 0) // ring[0] = descriptor 0
        .store32(AVAIL, 1 << 16); // flags 0, idx 1
    probe_and_setup(&mut asm, base, 1);
    asm.store32(base + reg::QUEUE_NOTIFY as u32, 1)
        .report(USED, 4) // used flags + idx
        .report(USED + 4, 4) // used ring[0].id
        .report(base + reg::INTERRUPT_STATUS as u32, 1)
        .store32(base + reg::INTERRUPT_ACK as u32, 1)
        .report(base + reg::INTERRUPT_STATUS as u32, 1);
    let code = asm.exit(7);

    let (mut vm, serial) = tiny_vm(&code);
    let sink = Capture::default();
    let (transport, slot) = vm.add_virtio(Console::new(Box::new(sink.clone()))).unwrap();
    assert_eq!(slot.base, u64::from(base));
    assert_eq!(vm.run().unwrap(), VmExit::PowerOff(7));

    let mut expected = probe_report(3, 1);
    expected.extend([0, 0, 1, 0]); // used flags 0, used idx 1
    expected.extend([0, 0, 0, 0]); // used ring[0].id = 0
    expected.extend([1, 0]); // interrupt status: used buffer, then acked
    assert_eq!(serial.bytes(), expected);
    assert_eq!(sink.bytes(), b"ping\n");
    let transport = transport.lock().unwrap();
    assert_eq!(transport.acked_features(), 1 << 32);
    assert_eq!(transport.status(), 0xf);
}

/// virtio-blk: the guest reads the capacity from config space, reads
/// sector 1 of the image and writes sector 2, through three-descriptor
/// chains; the data, status bytes and file contents are checked.
#[test]
fn block_read_and_write_sectors() {
    if !kvm_available() {
        return;
    }
    let mut image = tempfile::NamedTempFile::new().unwrap();
    let mut content = vec![0u8; 4 * 512];
    content[512..1024].fill(0xab);
    content[512..516].copy_from_slice(b"SEC1");
    image.write_all(&content).unwrap();
    image.flush().unwrap();

    let base = 0xd000_0000u32;
    let header = BUF;
    let data = BUF + 0x1000;
    let status = BUF + 0x2000;
    let mut asm = Asm::default();
    asm.report(base + reg::CONFIG as u32, 4); // capacity, low word
                                              // Request 0: read sector 1.
    asm.store32(header, 0)
        .store32(header + 4, 0)
        .store64(header + 8, 1)
        .store32(status, 0xff)
        .descriptor(DESC, 0, u64::from(header), 16, NEXT, 1)
        .descriptor(DESC, 1, u64::from(data), 512, NEXT | WRITE, 2)
        .descriptor(DESC, 2, u64::from(status), 1, WRITE, 0)
        .store32(AVAIL + 4, 0)
        .store32(AVAIL, 1 << 16);
    probe_and_setup(&mut asm, base, 0);
    asm.store32(base + reg::QUEUE_NOTIFY as u32, 0)
        .report(status, 1)
        .report(data, 4)
        .report(USED + 8, 4); // used ring[0].len = 512 + 1
                              // Request 1: write sector 2 from a buffer the guest fills.
    let out = BUF + 0x3000;
    asm.store32(header + 0x100, 1)
        .store32(header + 0x104, 0)
        .store64(header + 0x108, 2)
        .store32(out, u32::from_le_bytes(*b"GST2"))
        .store32(status, 0xff)
        .descriptor(DESC, 3, u64::from(header + 0x100), 16, NEXT, 4)
        .descriptor(DESC, 4, u64::from(out), 512, NEXT, 5)
        .descriptor(DESC, 5, u64::from(status), 1, WRITE, 0)
        .store32(AVAIL + 4, 3 << 16) // ring[1] = 3 (ring[0] kept)
        .store32(AVAIL, 2 << 16)
        .store32(base + reg::QUEUE_NOTIFY as u32, 0)
        .report(status, 1)
        .report(USED, 4);
    let code = asm.exit(9);

    let (mut vm, serial) = tiny_vm(&code);
    vm.add_virtio(Block::open(image.path()).unwrap()).unwrap();
    assert_eq!(vm.run().unwrap(), VmExit::PowerOff(9));

    let mut expected = 4u32.to_le_bytes().to_vec(); // 4 sectors
    expected.extend(probe_report(2, 1));
    expected.push(0); // status OK
    expected.extend(b"SEC1");
    expected.extend(513u32.to_le_bytes());
    expected.push(0); // status OK
    expected.extend([0, 0, 2, 0]); // used idx 2
    assert_eq!(serial.bytes(), expected);
    let written = std::fs::read(image.path()).unwrap();
    assert_eq!(&written[1024..1028], b"GST2");
    assert_eq!(&written[512..516], b"SEC1");
}

/// virtio-console receive: host input pushed before the guest posts a
/// buffer is delivered into it when the guest notifies the receive queue;
/// the used length is the input's length.
#[test]
fn console_receive_through_virtqueue() {
    if !kvm_available() {
        return;
    }
    let base = 0xd000_0000u32;
    let mut asm = Asm::default();
    asm.store32(BUF, 0)
        .descriptor(DESC, 0, u64::from(BUF), 64, WRITE, 0)
        .store32(AVAIL + 4, 0)
        .store32(AVAIL, 1 << 16);
    probe_and_setup(&mut asm, base, 0);
    asm.store32(base + reg::QUEUE_NOTIFY as u32, 0)
        .report(BUF, 4)
        .report(USED + 8, 4); // used ring[0].len
    let code = asm.exit(1);

    let (mut vm, serial) = tiny_vm(&code);
    let (transport, _) = vm
        .add_virtio(Console::new(Box::new(Capture::default())))
        .unwrap();
    transport.lock().unwrap().device_mut().push_input(b"ack");
    assert_eq!(vm.run().unwrap(), VmExit::PowerOff(1));
    let mut expected = probe_report(3, 1);
    expected.extend(b"ack\0");
    expected.extend(3u32.to_le_bytes());
    assert_eq!(serial.bytes(), expected);
    assert_eq!(transport.lock().unwrap().device().pending_input(), 0);
}

/// Feature negotiation: a driver acknowledging a feature the device does
/// not offer does not get FEATURES_OK.
#[test]
fn unoffered_feature_is_refused() {
    if !kvm_available() {
        return;
    }
    let base = 0xd000_0000u32;
    let r = |off: u64| base + off as u32;
    let mut asm = Asm::default();
    asm.store32(r(reg::STATUS), 3)
        .store32(r(reg::DRIVER_FEATURES_SEL), 0)
        .store32(r(reg::DRIVER_FEATURES), 1) // bit 0: not offered
        .store32(r(reg::STATUS), 0xb)
        .report(r(reg::STATUS), 1);
    let code = asm.exit(0);
    let (mut vm, serial) = tiny_vm(&code);
    vm.add_virtio(Console::new(Box::new(Capture::default())))
        .unwrap();
    assert_eq!(vm.run().unwrap(), VmExit::PowerOff(0));
    assert_eq!(serial.bytes(), [0x3]);
}
