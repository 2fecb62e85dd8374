//! The virtual machine: KVM objects, guest RAM, devices and the vCPU run
//! loop that dispatches port and MMIO exits to the device models.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::time::Duration;

use kvm_bindings::{kvm_pit_config, CpuId, KVM_PIT_SPEAKER_DUMMY, KVM_SYSTEM_EVENT_RESET};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use crate::acpi::{self, AcpiError};
use crate::boot::{self, gdt, paging, BootError, LoadedKernel};
use crate::cpu::{self, CpuError};
use crate::devices::serial::{SerialConsole, SerialError};
use crate::devices::virtio::mmio::{MmioDevice, MmioError, MmioTransport};
use crate::devices::virtio::VirtioDevice;
use crate::layout::{
    EXIT_PORT, I8042_PORT, I8042_RESET, MMIO_BASE, MMIO_FIRST_IRQ, MMIO_SIZE, SERIAL_IRQ,
};
use crate::memory::{self, MemoryError};

/// Address KVM uses for the real-mode TSS on Intel hosts (three pages
/// just below the BIOS area).
const TSS_ADDRESS: usize = 0xfffb_d000;
/// Most vCPUs a VM may have (the APIC id is a byte).
pub const MAX_VCPUS: u8 = 254;

/// Size of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineConfig {
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Number of vCPUs.
    pub vcpus: u8,
}

/// Why the VM stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// The guest wrote this status to the exit port.
    PowerOff(u8),
    /// The guest asked for a reset (i8042 or a KVM system event).
    Reset,
    /// The guest shut down (triple fault or a KVM shutdown event).
    Shutdown,
}

/// Why the VM could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The vCPU count is out of range.
    #[error("{0} vCPUs: must be between 1 and {MAX_VCPUS}")]
    Vcpus(u8),
    /// A KVM ioctl on the VM failed.
    #[error("{what}: {source}")]
    Kvm {
        /// The operation.
        what: &'static str,
        /// Underlying error.
        source: kvm_ioctls::Error,
    },
    /// An eventfd could not be created.
    #[error("creating the interrupt eventfd for IRQ {irq}: {source}")]
    EventFd {
        /// The interrupt line.
        irq: u32,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Guest RAM.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// vCPU set-up.
    #[error(transparent)]
    Cpu(#[from] CpuError),
    /// Kernel loading.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// Page tables.
    #[error(transparent)]
    Paging(#[from] paging::PagingError),
    /// GDT.
    #[error(transparent)]
    Gdt(#[from] gdt::GdtError),
    /// ACPI tables.
    #[error(transparent)]
    Acpi(#[from] AcpiError),
    /// The serial port.
    #[error(transparent)]
    Serial(#[from] SerialError),
    /// A virtio-mmio device.
    #[error(transparent)]
    Mmio(#[from] MmioError),
    /// `KVM_RUN` failed.
    #[error("running vCPU {cpu}: {source}")]
    Run {
        /// The vCPU.
        cpu: u8,
        /// Underlying error.
        source: kvm_ioctls::Error,
    },
    /// The vCPU stopped for a reason the VMM cannot handle.
    #[error("vCPU {cpu} stopped: {exit}")]
    UnhandledExit {
        /// The vCPU.
        cpu: u8,
        /// The exit, as KVM reported it.
        exit: String,
    },
    /// A vCPU thread panicked.
    #[error("vCPU {0} thread panicked")]
    Panicked(u8),
}

/// A device's transport, shared by the vCPUs and host-side feeders.
pub type SharedTransport<D> = Arc<Mutex<MmioTransport<D>>>;

/// Where a virtio-mmio device sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioSlot {
    /// Base of its register window.
    pub base: u64,
    /// Its interrupt line.
    pub irq: u32,
}

/// The devices the vCPUs reach, shared between vCPU threads.
#[derive(Default)]
struct Bus {
    serial: Option<Mutex<SerialConsole>>,
    mmio: Vec<(MmioSlot, Arc<Mutex<dyn MmioDevice>>)>,
}

/// A VM being set up, then run with [`Vm::run`].
pub struct Vm {
    fd: VmFd,
    memory: GuestMemoryMmap,
    vcpus: Vec<VcpuFd>,
    bus: Bus,
}

/// No-op handler: the signal only makes `KVM_RUN` return.
extern "C" fn kick_handler(
    _num: libc::c_int,
    _info: *mut libc::siginfo_t,
    _unused: *mut libc::c_void,
) {
}

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

impl Vm {
    /// Creates the VM with its RAM, interrupt controllers, PIT and vCPUs.
    pub fn new(config: MachineConfig) -> Result<Vm, VmError> {
        if config.vcpus == 0 || config.vcpus > MAX_VCPUS {
            return Err(VmError::Vcpus(config.vcpus));
        }
        static KICK: Once = Once::new();
        let mut kick_result = Ok(());
        KICK.call_once(|| kick_result = register_signal_handler(kick_signal(), kick_handler));
        kick_result.map_err(|e| VmError::Kvm {
            what: "installing the vCPU kick signal handler",
            source: e,
        })?;
        let kvm_err = |what| move |source| VmError::Kvm { what, source };
        let kvm = Kvm::new().map_err(kvm_err("opening /dev/kvm"))?;
        let fd = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        let size = config.memory_mib.saturating_mul(1 << 20);
        let memory = memory::create(size)?;
        memory::register(&fd, &memory)?;
        fd.set_tss_address(TSS_ADDRESS)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        fd.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        let cpuid: CpuId = cpu::supported_cpuid(&kvm)?;
        let mut vcpus = Vec::new();
        for id in 0..config.vcpus {
            let vcpu = fd
                .create_vcpu(u64::from(id))
                .map_err(kvm_err("KVM_CREATE_VCPU"))?;
            cpu::set_cpuid(&vcpu, id, &cpuid)?;
            vcpus.push(vcpu);
        }
        Ok(Vm {
            fd,
            memory,
            vcpus,
            bus: Bus::default(),
        })
    }

    /// Guest RAM.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// Puts the UART on COM1, its output going to `out`.
    pub fn add_serial(&mut self, out: Box<dyn Write + Send>) -> Result<(), VmError> {
        let irq = self.irq_eventfd(SERIAL_IRQ)?;
        self.bus.serial = Some(Mutex::new(SerialConsole::new(irq, out)));
        Ok(())
    }

    /// Adds a virtio device in the next virtio-mmio window and returns its
    /// transport (for host-side input) and where it sits.
    pub fn add_virtio<D: VirtioDevice + 'static>(
        &mut self,
        device: D,
    ) -> Result<(SharedTransport<D>, MmioSlot), VmError> {
        let n = self.bus.mmio.len() as u64;
        let slot = MmioSlot {
            base: MMIO_BASE + n * MMIO_SIZE,
            irq: MMIO_FIRST_IRQ + n as u32,
        };
        let irq = self.irq_eventfd(slot.irq)?;
        let transport = Arc::new(Mutex::new(MmioTransport::new(
            device,
            self.memory.clone(),
            irq,
        )));
        self.bus.mmio.push((slot, transport.clone()));
        Ok((transport, slot))
    }

    /// Writes the ACPI tables (vCPUs, virtio-mmio devices), loads a Linux
    /// kernel, its initramfs and `cmdline`, and points the boot vCPU at its
    /// 64-bit entry.
    pub fn load_linux(
        &mut self,
        kernel: &Path,
        initramfs: Option<&Path>,
        cmdline: &str,
    ) -> Result<LoadedKernel, VmError> {
        let cmdline = boot::kernel::cmdline(cmdline)?;
        let slots: Vec<MmioSlot> = self.bus.mmio.iter().map(|(slot, _)| *slot).collect();
        let tables = acpi::build(self.vcpus.len() as u8, &slots)?;
        let rsdp = acpi::write(&self.memory, &tables)?;
        let loaded = boot::load_kernel(&self.memory, kernel, initramfs, &cmdline, Some(rsdp))?;
        self.start_at(loaded.entry)?;
        Ok(loaded)
    }

    /// Writes the identity page tables and GDT and puts the boot vCPU in
    /// 64-bit mode at `entry`. The other vCPUs wait for the guest to start
    /// them (INIT/SIPI).
    pub fn start_at(&mut self, entry: GuestAddress) -> Result<(), VmError> {
        paging::write_identity_tables(&self.memory)?;
        gdt::write_tables(&self.memory)?;
        cpu::setup_long_mode(&self.vcpus[0], 0, entry.0)?;
        Ok(())
    }

    /// Runs every vCPU on its own thread until one of them stops the VM,
    /// then stops the others.
    pub fn run(self) -> Result<VmExit, VmError> {
        let bus = &self.bus;
        let stop = &AtomicBool::new(false);
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| {
            let mut threads = Vec::new();
            for (id, mut vcpu) in (0u8..).zip(self.vcpus) {
                let tx = tx.clone();
                let (tid_tx, tid_rx) = mpsc::channel();
                let handle = scope.spawn(move || {
                    // SAFETY: pthread_self has no preconditions.
                    let _ = tid_tx.send(unsafe { libc::pthread_self() });
                    let result = run_vcpu(id, &mut vcpu, bus, stop);
                    let _ = tx.send((id, result));
                });
                let tid = tid_rx.recv().map_err(|_| VmError::Panicked(id))?;
                threads.push((id, tid, handle));
            }
            drop(tx);
            let first = match rx.recv() {
                Ok((_, result)) => result,
                Err(_) => Err(VmError::Panicked(0)),
            };
            stop.store(true, Ordering::SeqCst);
            while threads.iter().any(|(_, _, h)| !h.is_finished()) {
                for (_, tid, handle) in &threads {
                    if !handle.is_finished() {
                        // SAFETY: the thread is not joined yet, so its
                        // pthread_t is valid; the signal has a no-op handler.
                        unsafe { libc::pthread_kill(*tid, kick_signal()) };
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            for (id, _, handle) in threads {
                handle.join().map_err(|_| VmError::Panicked(id))?;
            }
            first?.ok_or(VmError::Panicked(0))
        })
    }

    fn irq_eventfd(&self, irq: u32) -> Result<EventFd, VmError> {
        let evt = EventFd::new(EFD_NONBLOCK).map_err(|source| VmError::EventFd { irq, source })?;
        self.fd
            .register_irqfd(&evt, irq)
            .map_err(|source| VmError::Kvm {
                what: "KVM_IRQFD",
                source,
            })?;
        Ok(evt)
    }
}

/// Runs one vCPU until it stops the VM (`Some`) or is told to stop (`None`).
fn run_vcpu(
    cpu: u8,
    vcpu: &mut VcpuFd,
    bus: &Bus,
    stop: &AtomicBool,
) -> Result<Option<VmExit>, VmError> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        match vcpu.run() {
            Ok(exit) => {
                if let Some(exit) = handle_exit(cpu, exit, bus)? {
                    return Ok(Some(exit));
                }
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(source) => return Err(VmError::Run { cpu, source }),
        }
    }
}

fn handle_exit(cpu: u8, exit: VcpuExit<'_>, bus: &Bus) -> Result<Option<VmExit>, VmError> {
    match exit {
        VcpuExit::IoOut(port, data) => {
            let value = data.first().copied().unwrap_or(0);
            if port == EXIT_PORT {
                return Ok(Some(VmExit::PowerOff(value)));
            }
            if port == I8042_PORT && value == I8042_RESET {
                return Ok(Some(VmExit::Reset));
            }
            if let (true, Some(serial)) = (SerialConsole::owns(port), &bus.serial) {
                lock(serial).write(port, value)?;
            }
        }
        VcpuExit::IoIn(port, data) => {
            data.fill(0xff);
            if let (true, Some(serial), Some(byte)) =
                (SerialConsole::owns(port), &bus.serial, data.first_mut())
            {
                *byte = lock(serial).read(port);
            }
        }
        VcpuExit::MmioRead(addr, data) => {
            data.fill(0);
            if let Some((slot, device)) = find(bus, addr) {
                lock(device).read(addr - slot.base, data);
            }
        }
        VcpuExit::MmioWrite(addr, data) => {
            if let Some((slot, device)) = find(bus, addr) {
                lock(device).write(addr - slot.base, data)?;
            }
        }
        VcpuExit::Shutdown => return Ok(Some(VmExit::Shutdown)),
        VcpuExit::SystemEvent(kind, _) => {
            return Ok(Some(if kind == KVM_SYSTEM_EVENT_RESET {
                VmExit::Reset
            } else {
                VmExit::Shutdown
            }))
        }
        VcpuExit::Intr => {}
        other => {
            return Err(VmError::UnhandledExit {
                cpu,
                exit: format!("{other:?}"),
            })
        }
    }
    Ok(None)
}

fn find(bus: &Bus, addr: u64) -> Option<(MmioSlot, &Mutex<dyn MmioDevice>)> {
    bus.mmio
        .iter()
        .find(|(slot, _)| (slot.base..slot.base + MMIO_SIZE).contains(&addr))
        .map(|(slot, device)| (*slot, &**device))
}

/// Locks a device; a panic while holding it already failed the VM, so a
/// poisoned lock is used as is.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
