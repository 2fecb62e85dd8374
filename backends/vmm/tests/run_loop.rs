//! The run loop under real KVM with tiny 64-bit guests set up exactly as
//! the VMM sets up a kernel's entry.

mod common;

use common::{kvm_available, print_and_exit, tiny_vm};
use strata_vmm::VmExit;

/// A guest printing on COM1 and powering off: the bytes reach the console
/// sink and the exit status reaches the caller.
#[test]
fn serial_output_and_exit_port() {
    if !kvm_available() {
        return;
    }
    let (vm, serial) = tiny_vm(&print_and_exit(b"hello from the guest\n", 42));
    assert_eq!(vm.run().unwrap(), VmExit::PowerOff(42));
    assert_eq!(serial.bytes(), b"hello from the guest\n");
}

/// With two vCPUs the second waits for a SIPI inside KVM_RUN; when the boot
/// vCPU powers off, the run loop kicks it out and returns.
#[test]
fn second_vcpu_is_stopped_on_exit() {
    if !kvm_available() {
        return;
    }
    use strata_vmm::{MachineConfig, Vm};
    use vm_memory::{Bytes, GuestAddress};
    let mut vm = Vm::new(MachineConfig {
        memory_mib: 16,
        vcpus: 2,
    })
    .unwrap();
    let code = common::exit(11);
    vm.memory()
        .write_slice(&code, GuestAddress(common::CODE_ADDR))
        .unwrap();
    vm.start_at(GuestAddress(common::CODE_ADDR)).unwrap();
    assert_eq!(vm.run().unwrap(), VmExit::PowerOff(11));
}

/// Zero vCPUs is refused with the count in the message.
#[test]
fn zero_vcpus_refused() {
    let err = strata_vmm::Vm::new(strata_vmm::MachineConfig {
        memory_mib: 16,
        vcpus: 0,
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("0 vCPUs"), "{err}");
}
