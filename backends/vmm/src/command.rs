//! The VMM process: its command line, the VM it builds from it, and the run
//! inside the sandbox. Both the `strata-vmm` binary and the shim (re-executed
//! with a `vmm` argument) are thin wrappers over [`main`].
//!
//! ```text
//! --kernel K [--initramfs I] [--cmdline C] [--memory-mib M] [--vcpus N]
//! [--disk PATH[,serial=NAME]]... [--console-socket PATH]
//! ```
//!
//! The guest's COM1 output goes to stdout. `--console-socket` names a Unix
//! stream socket the caller listens on: the VMM connects to it and bridges
//! it to a virtio-console port (the agent's channel). Each `--disk` becomes
//! a virtio-blk device on a raw image whose id (the guest's
//! `/sys/block/*/serial`) is `NAME`, or else the image's file name. Devices
//! and vCPUs are described to the guest by ACPI tables. Once the VM is
//! built the process drops every capability and enters its seccomp
//! allow-list, then runs the vCPUs.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::boot::LoadedKernel;
use crate::devices::virtio::block::{Block, BlockError, ID_LEN};
use crate::devices::virtio::console::{Console, RX_QUEUE};
use crate::sandbox::{self, SandboxError};
use crate::vm::SharedTransport;
use crate::{MachineConfig, Vm, VmError, VmExit};

/// Exit status for a command line that cannot be used.
pub const USAGE_STATUS: u8 = 2;
/// Exit status when the VM could not be built or failed while running.
pub const FAILURE_STATUS: u8 = 1;
/// What introduces a disk's serial in `--disk PATH,serial=NAME`.
const SERIAL_OPTION: &str = ",serial=";

/// One `--disk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The raw image.
    pub path: PathBuf,
    /// The id the guest reads as the disk's serial; the file name if unset.
    pub serial: Option<String>,
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The kernel: ELF vmlinux or bzImage.
    pub kernel: PathBuf,
    /// The initramfs, if any.
    pub initramfs: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Virtio-blk devices, in order.
    pub disks: Vec<Disk>,
    /// The socket bridged to the virtio console, if any.
    pub console_socket: Option<PathBuf>,
}

/// Why the VMM could not run.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// Building or running the VM failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// A disk image could not be opened.
    #[error(transparent)]
    Disk(#[from] BlockError),
    /// The console socket could not be reached.
    #[error("connecting to console socket {path}: {source}")]
    ConsoleSocket {
        /// The socket.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The sandbox could not be entered.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// Parses the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, CommandError> {
    let usage = CommandError::Usage;
    let mut parsed = Args {
        kernel: PathBuf::new(),
        initramfs: None,
        cmdline: String::new(),
        memory_mib: 256,
        vcpus: 1,
        disks: Vec::new(),
        console_socket: None,
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(usage(format!("{flag} needs a value")));
        match flag.as_str() {
            "--kernel" => parsed.kernel = value()?.into(),
            "--initramfs" => parsed.initramfs = Some(value()?.into()),
            "--cmdline" => parsed.cmdline = value()?,
            "--memory-mib" => {
                let v = value()?;
                parsed.memory_mib = v
                    .parse()
                    .map_err(|e| usage(format!("--memory-mib {v}: {e}")))?;
            }
            "--vcpus" => {
                let v = value()?;
                parsed.vcpus = v.parse().map_err(|e| usage(format!("--vcpus {v}: {e}")))?;
            }
            "--disk" => parsed.disks.push(disk(&value()?)?),
            "--console-socket" => parsed.console_socket = Some(value()?.into()),
            other => return Err(usage(format!("unknown argument {other}"))),
        }
    }
    if parsed.kernel.as_os_str().is_empty() {
        return Err(usage("--kernel is required".into()));
    }
    Ok(parsed)
}

/// Parses `PATH[,serial=NAME]`; the last `,serial=` separates them.
fn disk(value: &str) -> Result<Disk, CommandError> {
    let Some((path, serial)) = value.rsplit_once(SERIAL_OPTION) else {
        return Ok(Disk {
            path: value.into(),
            serial: None,
        });
    };
    if serial.is_empty() || serial.len() > ID_LEN {
        return Err(CommandError::Usage(format!(
            "--disk {value}: the serial must be 1 to {ID_LEN} bytes"
        )));
    }
    Ok(Disk {
        path: path.into(),
        serial: Some(serial.to_owned()),
    })
}

/// A built VM, ready for [`run`].
pub struct Machine {
    /// The VM, its kernel loaded.
    pub vm: Vm,
    /// Where the kernel, initramfs and entry point went.
    pub kernel: LoadedKernel,
    /// The console socket and the transport its input is fed to.
    console: Option<(UnixStream, SharedTransport<Console>)>,
}

/// Builds the VM `args` describe: RAM and vCPUs, COM1 on stdout, the
/// disks, the console bridged to the console socket, the ACPI tables and
/// the loaded kernel. Nothing runs yet.
pub fn build(args: &Args) -> Result<Machine, CommandError> {
    let mut vm = Vm::new(MachineConfig {
        memory_mib: args.memory_mib,
        vcpus: args.vcpus,
    })?;
    vm.add_serial(Box::new(std::io::stdout()))?;
    for disk in &args.disks {
        let block = match &disk.serial {
            Some(serial) => Block::open_with_id(&disk.path, serial.as_bytes())?,
            None => Block::open(&disk.path)?,
        };
        vm.add_virtio(block)?;
    }
    let console = match &args.console_socket {
        Some(path) => {
            let socket_err = |source| CommandError::ConsoleSocket {
                path: path.clone(),
                source,
            };
            let stream = UnixStream::connect(path).map_err(socket_err)?;
            let output = stream.try_clone().map_err(socket_err)?;
            let (transport, _) = vm.add_virtio(Console::new(Box::new(output)))?;
            Some((stream, transport))
        }
        None => None,
    };
    let kernel = vm.load_linux(&args.kernel, args.initramfs.as_deref(), &args.cmdline)?;
    Ok(Machine {
        vm,
        kernel,
        console,
    })
}

/// Enters the sandbox, starts feeding the console socket's bytes to the
/// guest, and runs the vCPUs until the guest stops the VM.
pub fn run(machine: Machine) -> Result<VmExit, CommandError> {
    sandbox::lockdown()?;
    if let Some((mut stream, transport)) = machine.console {
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
    Ok(machine.vm.run()?)
}

/// Parses `args` (without the program name), builds and runs the VM, and
/// returns the process's exit status: the guest's power-off status, 0 after
/// a reset or shutdown, [`USAGE_STATUS`] for a bad command line and
/// [`FAILURE_STATUS`] when the VM failed. Errors go to stderr.
pub fn main(args: impl IntoIterator<Item = String>) -> u8 {
    let result = parse(args).and_then(|args| run(build(&args)?));
    match result {
        Ok(VmExit::PowerOff(status)) => status,
        Ok(VmExit::Reset | VmExit::Shutdown) => 0,
        Err(e) => {
            eprintln!("strata-vmm: {e}");
            match e {
                CommandError::Usage(_) => USAGE_STATUS,
                _ => FAILURE_STATUS,
            }
        }
    }
}

/// The `--disk` argument for `path` with the guest-visible `serial`.
pub fn disk_arg(path: &Path, serial: &str) -> String {
    format!("{}{SERIAL_OPTION}{serial}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, CommandError> {
        parse(list.iter().map(|s| s.to_string()))
    }

    /// Every option is read; a disk's serial is split from its path at the
    /// last `,serial=`; a missing kernel, a bad number and an overlong
    /// serial are usage errors naming the argument.
    #[test]
    fn parses_the_command_line() {
        let parsed = args(&[
            "--kernel",
            "/k",
            "--initramfs",
            "/i",
            "--cmdline",
            "console=ttyS0",
            "--memory-mib",
            "128",
            "--vcpus",
            "2",
            "--disk",
            "rootfs.img,serial=ROOT",
            "--disk",
            "/a,b.img",
            "--console-socket",
            "agent.sock",
        ])
        .unwrap();
        assert_eq!(parsed.kernel, Path::new("/k"));
        assert_eq!(parsed.initramfs.as_deref(), Some(Path::new("/i")));
        assert_eq!(parsed.cmdline, "console=ttyS0");
        assert_eq!((parsed.memory_mib, parsed.vcpus), (128, 2));
        assert_eq!(
            parsed.disks,
            vec![
                Disk {
                    path: "rootfs.img".into(),
                    serial: Some("ROOT".into())
                },
                Disk {
                    path: "/a,b.img".into(),
                    serial: None
                }
            ]
        );
        assert_eq!(
            parsed.console_socket.as_deref(),
            Some(Path::new("agent.sock"))
        );
        assert_eq!(
            disk(&disk_arg(Path::new("spare0.img"), "spare0")).unwrap(),
            Disk {
                path: "spare0.img".into(),
                serial: Some("spare0".into())
            }
        );

        for (bad, needle) in [
            (&["--vcpus", "1"][..], "--kernel is required"),
            (&["--kernel", "/k", "--vcpus", "x"][..], "--vcpus x"),
            (&["--kernel"][..], "--kernel needs a value"),
            (&["--kernel", "/k", "--bogus"][..], "--bogus"),
            (
                &["--kernel", "/k", "--disk", "d,serial=123456789012345678901"][..],
                "1 to 20 bytes",
            ),
        ] {
            let err = args(bad).unwrap_err();
            assert!(matches!(err, CommandError::Usage(_)), "{err:?}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }
}
