//! The VMM's sandbox under real conditions, in a child process (seccomp
//! and capabilities cannot be undone): after `lockdown` a syscall outside
//! the allow-list fails with EPERM, every capability set is empty, seccomp
//! is in filter mode, and a tiny guest still runs (on new vCPU threads).
//!
//! A plain `main` (no test harness) so the child is exactly this program.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};

use strata_vmm::{sandbox, VmExit};

const CHILD_ENV: &str = "STRATA_VMM_SANDBOX_CHILD";

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    if !common::kvm_available() {
        return;
    }
    parent();
}

/// Builds a VM, locks down, reports, waits for the parent, runs the guest.
fn child() {
    let (vm, serial) = common::tiny_vm(&common::print_and_exit(b"still running\n", 5));
    // Something to try after lockdown that needs a new socket.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s");
    let _listener = UnixListener::bind(&sock).unwrap();
    sandbox::lockdown().unwrap();

    let open = std::fs::File::open("/etc/hostname").map(drop);
    let connect = std::os::unix::net::UnixStream::connect(&sock).map(drop);
    let mut out = std::io::stdout().lock();
    writeln!(out, "open {:?}", open.map_err(|e| e.raw_os_error())).unwrap();
    writeln!(out, "connect {:?}", connect.map_err(|e| e.raw_os_error())).unwrap();
    writeln!(out, "locked").unwrap();
    out.flush().unwrap();
    let mut byte = [0u8; 1];
    std::io::stdin().read_exact(&mut byte).unwrap();

    let exit = vm.run().unwrap();
    writeln!(out, "exit {exit:?}").unwrap();
    writeln!(out, "serial {:?}", String::from_utf8_lossy(&serial.bytes())).unwrap();
    out.flush().unwrap();
}

fn parent() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().unwrap().unwrap();
    let eperm = format!("Err(Some({}))", libc::EPERM);
    assert_eq!(next(), format!("open {eperm}"), "openat must be refused");
    assert_eq!(next(), format!("connect {eperm}"), "socket must be refused");
    assert_eq!(next(), "locked");

    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} missing"))
            .trim()
            .to_string()
    };
    for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(cap), "0000000000000000", "{cap}");
    }
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");

    child.stdin.take().unwrap().write_all(b"g").unwrap();
    assert_eq!(next(), format!("exit {:?}", VmExit::PowerOff(5)));
    assert_eq!(next(), "serial \"still running\\n\"");
    assert!(child.wait().unwrap().success());
    println!("sandbox: ok");
}
