//! QEMU's command line: the microvm machine, its own seccomp sandbox, the
//! agent's named virtio-serial port on a socket QEMU listens on, and the
//! disks as virtio-blk devices with the serials the agent looks for.

use std::process::Command;

use strata_agent::protocol::{PORT_NAME, ROOT_DISK};

use super::{spare, VmConfig, CMDLINE, DISK, SOCKET};
use crate::hypervisor::Accel;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// The command that runs `config`'s VM under QEMU with `accel`, from the
/// state directory.
pub fn command(config: &VmConfig, accel: Accel) -> Command {
    let mut command = Command::new(QEMU);
    command
        .args(["-name", &format!("strata-{}", config.id)])
        .args(["-M", "microvm", "-accel", accel.as_str()])
        .args(["-smp", &config.vcpus.to_string()])
        .args(["-m", &config.memory_mib.to_string()])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        // QEMU's own seccomp filter: once the VM runs, QEMU may not gain
        // privileges, start programs, change resource limits or make
        // obsolete syscalls; a compromised device model is held there.
        .args([
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        ])
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(&config.kernel)
        .arg("-initrd")
        .arg(&config.initramfs)
        .args(["-append", &kernel_command_line(accel)])
        .args(["-device", "virtio-serial-device"])
        .args([
            "-chardev",
            &format!("socket,id=agent,path={SOCKET},server=on,wait=off"),
        ])
        .args([
            "-device",
            &format!("virtserialport,chardev=agent,name={PORT_NAME}"),
        ])
        .args([
            "-drive",
            &format!("id=root,file={DISK},format=raw,if=none,cache=unsafe"),
        ])
        .args([
            "-device",
            &format!("virtio-blk-device,drive=root,serial={ROOT_DISK}"),
        ]);
    for slot in 0..config.spares {
        let name = spare(slot);
        command
            .args([
                "-drive",
                &format!("id={name},file={name}.img,format=raw,if=none,cache=unsafe"),
            ])
            .args([
                "-device",
                &format!("virtio-blk-device,drive={name},serial={name}"),
            ]);
    }
    if accel == Accel::Kvm {
        command.args(["-cpu", "host"]);
    }
    command
}

/// The guest kernel's command line. Under TCG, the guest's TSC runs at the
/// host's rate but the kernel's calibration against the emulated PIT fails
/// on a busy host (and the boot then stalls), so the rate is given.
fn kernel_command_line(accel: Accel) -> String {
    let mut line = String::from(CMDLINE);
    if accel == Accel::Tcg {
        if let Some(khz) = host_tsc_khz() {
            line.push_str(&format!(" tsc_early_khz={khz} tsc=reliable"));
        }
    }
    line
}

/// The host CPU's clock rate in kHz, from `/proc/cpuinfo`.
fn host_tsc_khz() -> Option<u64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("cpu MHz"))?
        .trim_start_matches([' ', '\t', ':'])
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}
