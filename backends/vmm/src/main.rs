//! `strata-vmm`: runs one microVM with the built-in VMM.
//!
//! ```text
//! strata-vmm --kernel K [--initramfs I] [--cmdline C] [--memory-mib M]
//!            [--vcpus N] [--disk PATH]... [--console-socket PATH]
//! ```
//!
//! The guest's COM1 output goes to stdout. `--console-socket` names a Unix
//! stream socket the caller listens on: the VMM connects to it and bridges
//! it to a virtio-console port (the agent's channel). Each `--disk` becomes
//! a virtio-blk device on a raw image. Devices and vCPUs are described to
//! the guest by ACPI tables. Once the VM is built the process
//! drops every capability and enters its seccomp allow-list, then runs the
//! vCPUs. The exit status is the guest's power-off status, or 0 after a
//! reset or shutdown.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use strata_vmm::devices::virtio::block::Block;
use strata_vmm::devices::virtio::console::{Console, RX_QUEUE};
use strata_vmm::{sandbox, MachineConfig, Vm, VmExit};

/// Parsed command line.
struct Args {
    kernel: PathBuf,
    initramfs: Option<PathBuf>,
    cmdline: String,
    memory_mib: u64,
    vcpus: u8,
    disks: Vec<PathBuf>,
    console_socket: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        kernel: PathBuf::new(),
        initramfs: None,
        cmdline: String::new(),
        memory_mib: 256,
        vcpus: 1,
        disks: Vec::new(),
        console_socket: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--kernel" => args.kernel = value()?.into(),
            "--initramfs" => args.initramfs = Some(value()?.into()),
            "--cmdline" => args.cmdline = value()?,
            "--memory-mib" => {
                let v = value()?;
                args.memory_mib = v.parse().map_err(|e| format!("--memory-mib {v}: {e}"))?;
            }
            "--vcpus" => {
                let v = value()?;
                args.vcpus = v.parse().map_err(|e| format!("--vcpus {v}: {e}"))?;
            }
            "--disk" => args.disks.push(value()?.into()),
            "--console-socket" => args.console_socket = Some(value()?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.kernel.as_os_str().is_empty() {
        return Err("--kernel is required".into());
    }
    Ok(args)
}

fn run(args: Args) -> Result<VmExit, String> {
    let mut vm = Vm::new(MachineConfig {
        memory_mib: args.memory_mib,
        vcpus: args.vcpus,
    })
    .map_err(|e| e.to_string())?;
    vm.add_serial(Box::new(std::io::stdout()))
        .map_err(|e| e.to_string())?;
    for disk in &args.disks {
        let block = Block::open(disk).map_err(|e| e.to_string())?;
        vm.add_virtio(block).map_err(|e| e.to_string())?;
    }
    let console = match &args.console_socket {
        Some(path) => {
            let stream = UnixStream::connect(path)
                .map_err(|e| format!("connecting to console socket {}: {e}", path.display()))?;
            let output = stream
                .try_clone()
                .map_err(|e| format!("duplicating console socket {}: {e}", path.display()))?;
            let (transport, _) = vm
                .add_virtio(Console::new(Box::new(output)))
                .map_err(|e| e.to_string())?;
            Some((stream, transport))
        }
        None => None,
    };
    vm.load_linux(&args.kernel, args.initramfs.as_deref(), &args.cmdline)
        .map_err(|e| e.to_string())?;
    sandbox::lockdown().map_err(|e| e.to_string())?;
    if let Some((mut stream, transport)) = console {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                let mut transport = transport.lock().unwrap_or_else(|e| e.into_inner());
                transport.device_mut().push_input(&buf[..n]);
                if let Err(e) = transport.process_queue(RX_QUEUE) {
                    eprintln!("strata-vmm: console input: {e}");
                    return;
                }
            }
        });
    }
    vm.run().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("strata-vmm: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(VmExit::PowerOff(status)) => ExitCode::from(status),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-vmm: {e}");
            ExitCode::FAILURE
        }
    }
}
