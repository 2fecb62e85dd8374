//! Strata's built-in virtual machine monitor, one process per sandbox of
//! the microvm class, built on the rust-vmm crates: KVM through
//! kvm-ioctls, guest RAM through vm-memory, kernel loading through
//! linux-loader, the 8250 console from vm-superio and virtqueues from
//! virtio-queue.
//!
//! The library builds a [`vm::Vm`] (RAM, vCPUs, devices, loaded kernel)
//! and runs it; [`command`] is the VMM process (arguments, devices, the
//! [`sandbox`] entered before the first instruction runs), which both the
//! `strata-vmm` binary and the shim's `vmm` mode run. [`check::check`] tells
//! whether the host can run real guests at all.

pub mod acpi;
pub mod boot;
pub mod check;
pub mod command;
pub mod cpu;
pub mod devices;
pub mod layout;
pub mod memory;
pub mod sandbox;
pub mod vm;

pub use vm::{MachineConfig, Vm, VmError, VmExit};
