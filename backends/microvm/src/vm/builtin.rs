//! The built-in VMM's command line: this binary re-executed with
//! [`crate::VMM_ARG`] (one binary to install), the kernel entered at its
//! 64-bit entry, the disks with the serials the agent looks for, and the
//! agent's channel on a socket the shim listens on (the VMM connects).

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;

use strata_agent::protocol::ROOT_DISK;
use strata_backend::{Error, Result};
use strata_vmm::command::disk_arg;

use super::{socket_path, spare, VmConfig, CMDLINE, DISK, SOCKET};
use crate::VMM_ARG;

/// The binary that runs the VMM when given [`VMM_ARG`]: the running one.
const SELF_EXE: &str = "/proc/self/exe";

/// The name the VMM goes by in messages.
pub const PROGRAM: &str = "strata-vmm";

/// The command that runs `config`'s VM on the built-in VMM, from the state
/// directory (the VMM finds its disks and socket there by relative path).
pub fn command(config: &VmConfig) -> Command {
    let mut command = Command::new(SELF_EXE);
    command
        .arg(VMM_ARG)
        .arg("--kernel")
        .arg(&config.kernel)
        .arg("--initramfs")
        .arg(&config.initramfs)
        .args(["--cmdline", CMDLINE])
        .args(["--memory-mib", &config.memory_mib.to_string()])
        .args(["--vcpus", &config.vcpus.to_string()])
        .args(["--disk", &disk_arg(Path::new(DISK), ROOT_DISK)]);
    for slot in 0..config.spares {
        let name = spare(slot);
        command.args([
            "--disk",
            &disk_arg(Path::new(&format!("{name}.img")), &name),
        ]);
    }
    command.args(["--console-socket", SOCKET]);
    command
}

/// Binds the agent's socket in `state_dir`, for the VMM to connect to once
/// it starts; non-blocking, to be accepted from the async runtime.
pub fn listen(state_dir: &Path) -> Result<UnixListener> {
    let (_dir, path) = socket_path(state_dir)?;
    let listener = UnixListener::bind(&path)
        .map_err(|e| Error::path("listening on", state_dir.join(SOCKET), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::path("listening on", state_dir.join(SOCKET), e))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::Monitor;
    use strata_vmm::command::{parse, Disk};

    /// The command is this binary in VMM mode, and the VMM's own parser
    /// reads from it the VM the backend asked for: kernel, initramfs, the
    /// plain command line, size, the root disk and spare disks with the
    /// serials the agent looks for, and the agent's socket.
    #[test]
    fn the_vmm_reads_the_vm_asked_for() {
        let config = VmConfig {
            id: "c1".into(),
            monitor: Monitor::Builtin,
            vcpus: 2,
            memory_mib: 192,
            kernel: "/data/vmlinux".into(),
            initramfs: "/data/initramfs.img".into(),
            state_dir: "/state".into(),
            spares: 2,
        };
        let command = command(&config);
        assert_eq!(command.get_program(), SELF_EXE);
        let mut args = command.get_args().map(|a| a.to_str().unwrap().to_owned());
        assert_eq!(args.next().as_deref(), Some(VMM_ARG));
        let parsed = parse(args).unwrap();
        assert_eq!(parsed.kernel, config.kernel);
        assert_eq!(parsed.initramfs, Some(config.initramfs));
        assert_eq!(parsed.cmdline, "console=ttyS0 quiet panic=-1");
        assert_eq!((parsed.memory_mib, parsed.vcpus), (192, 2));
        let disk = |path: &str, serial: &str| Disk {
            path: path.into(),
            serial: Some(serial.into()),
        };
        assert_eq!(
            parsed.disks,
            [
                disk("rootfs.img", ROOT_DISK),
                disk("spare0.img", "spare0"),
                disk("spare1.img", "spare1")
            ]
        );
        assert_eq!(parsed.console_socket.as_deref(), Some(Path::new(SOCKET)));
    }
}
