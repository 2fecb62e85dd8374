//! The `strata-vmm` binary end to end with a tiny guest packaged as an ELF
//! kernel: argument handling, devices from arguments, the sandbox entered
//! before the guest runs, the guest's exit status, and the process's RSS.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};

use common::Asm;

const BIN: &str = env!("CARGO_BIN_EXE_strata-vmm");

fn kernel_file(code: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&common::elf_with(code, common::CODE_ADDR))
        .unwrap();
    f
}

/// The guest prints, reads the virtio-mmio windows the `--disk` and
/// `--console-socket` arguments created (block, then console) and the ACPI
/// RSDP, and its power-off status becomes the process's exit status.
#[test]
fn runs_elf_guest_with_devices() {
    if !common::kvm_available() {
        return;
    }
    let mut asm = Asm::default();
    asm.0.extend(common::print_and_exit(b"hi\n", 0));
    asm.0.truncate(asm.0.len() - 5); // drop the exit, continue below
    asm.report(0xd000_0000, 4)
        .report(0xd000_0008, 1)
        .report(0xd000_1008, 1)
        .report(0xe0000, 4); // ACPI RSDP signature, first half
    let kernel = kernel_file(&asm.exit(3));
    let disk = tempfile::NamedTempFile::new().unwrap();
    disk.as_file().set_len(1 << 20).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();

    let out = Command::new(BIN)
        .arg("--kernel")
        .arg(kernel.path())
        .args([
            "--memory-mib",
            "32",
            "--vcpus",
            "1",
            "--cmdline",
            "console=ttyS0",
        ])
        .arg("--disk")
        .arg(disk.path())
        .arg("--console-socket")
        .arg(&sock)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut expected = b"hi\n".to_vec();
    expected.extend(b"virt");
    expected.extend([2, 3]);
    expected.extend(b"RSD ");
    assert_eq!(out.stdout, expected);
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_ok(),
        "the VMM connected to the console socket"
    );
}

/// Bad arguments are refused with a message naming them.
#[test]
fn rejects_bad_arguments() {
    let out = Command::new(BIN)
        .args(["--vcpus", "many"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vcpus many"));
    let out = Command::new(BIN)
        .args(["--kernel", "/nonexistent/vmlinux", "--memory-mib", "16"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/vmlinux"));
}

/// RSS of the VMM process running an idle tiny guest (halted with
/// interrupts off, so its vCPU sleeps in KVM); printed for the report and
/// bounded so that a regression shows.
#[test]
fn rss_running_tiny_guest() {
    if !common::kvm_available() {
        return;
    }
    let mut code = common::print_and_exit(b"idle\n", 0);
    code.truncate(code.len() - 5);
    code.extend([0xfa, 0xf4]); // cli; hlt
    let kernel = kernel_file(&code);
    let mut child = Command::new(BIN)
        .arg("--kernel")
        .arg(kernel.path())
        .args(["--memory-mib", "128"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "idle\n");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "VMM {pid} left behind"
    );
    eprintln!("strata-vmm RSS with an idle tiny guest (128 MiB RAM): {rss_kib} KiB");
    assert!(rss_kib < 32 * 1024, "RSS {rss_kib} KiB");
}

/// The agent channel end to end: the guest sends "ping\n" on the
/// virtio-console transmit queue and it arrives on the console socket;
/// the test answers "pong" on the socket, the VMM's reader thread (started
/// after the sandbox is entered) delivers it into the guest's receive
/// buffer, and the guest prints it on COM1.
#[test]
fn console_socket_carries_agent_channel() {
    use common::mmio_reg::*;
    if !common::kvm_available() {
        return;
    }
    let base = 0xd000_0000u32;
    let (tx_desc, tx_avail, tx_used) = (0x20_0000, 0x20_1000, 0x20_2000);
    let (rx_desc, rx_avail, rx_used) = (0x21_0000, 0x21_1000, 0x21_2000);
    let (tx_buf, rx_buf) = (0x22_0000u32, 0x22_1000u32);
    let mut asm = Asm::default();
    asm.store32(base + STATUS, 3)
        .store32(base + DRIVER_FEATURES_SEL, 1)
        .store32(base + DRIVER_FEATURES, 1)
        .store32(base + STATUS, 0xb)
        .setup_queue(base, 0, rx_desc, rx_avail, rx_used)
        .setup_queue(base, 1, tx_desc, tx_avail, tx_used)
        .store32(base + STATUS, 0xf)
        // Receive buffer first, so the answer has somewhere to go.
        .descriptor(rx_desc, 0, u64::from(rx_buf), 16, 2, 0)
        .store32(rx_avail + 4, 0)
        .store32(rx_avail, 1 << 16)
        .store32(base + QUEUE_NOTIFY, 0)
        .store32(tx_buf, u32::from_le_bytes(*b"ping"))
        .store32(tx_buf + 4, u32::from(b'\n'))
        .descriptor(tx_desc, 0, u64::from(tx_buf), 5, 0, 0)
        .store32(tx_avail + 4, 0)
        .store32(tx_avail, 1 << 16)
        .store32(base + QUEUE_NOTIFY, 1)
        .wait_for(rx_used, 1 << 16)
        .report(rx_buf, 4);
    let kernel = kernel_file(&asm.exit(0));
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();

    let mut child = Command::new(BIN)
        .arg("--kernel")
        .arg(kernel.path())
        .args(["--memory-mib", "32"])
        .arg("--console-socket")
        .arg(&sock)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let mut got = [0u8; 5];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping\n");
    conn.write_all(b"pong").unwrap();
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(stdout, b"pong");
}
