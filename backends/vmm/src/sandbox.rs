//! What the VMM gives up once the VM is set up: every capability, and
//! every system call the run loop does not need.
//!
//! After set-up the VMM only runs vCPUs (`KVM_RUN`), moves bytes between
//! guest memory, the disk image and its sockets, and starts and stops
//! threads; a compromised device model is left with exactly that.

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use strata_seccomp::{Filter, SeccompError};

/// `KVM_RUN`, the only ioctl left allowed.
pub const KVM_RUN: u64 = 0xae80;

/// System calls the run loop, its threads and the allocator need.
const ALLOWED: &[&str] = &[
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "fsync",
    "fdatasync",
    "lseek",
    "close",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "shutdown",
    "poll",
    "ppoll",
    "futex",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "brk",
    "rt_sigreturn",
    "rt_sigprocmask",
    "sigaltstack",
    "clone",
    "clone3",
    "set_robust_list",
    "rseq",
    "sched_yield",
    "sched_getaffinity",
    "getpid",
    "gettid",
    "tgkill",
    "clock_gettime",
    "clock_nanosleep",
    "nanosleep",
    "getrandom",
    "exit",
    "exit_group",
];

/// Why the sandbox could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The allow-list could not be built.
    #[error("building the VMM's seccomp allow-list: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    /// The filter could not be compiled or loaded.
    #[error("VMM seccomp filter: {0}")]
    Seccomp(#[from] SeccompError),
    /// Dropping capability `cap` from the bounding set failed.
    #[error("dropping capability {cap} from the bounding set: {source}")]
    Bounding {
        /// Capability number.
        cap: u32,
        /// Underlying error.
        source: std::io::Error,
    },
    /// `PR_SET_NO_NEW_PRIVS` failed (needed to load a filter unprivileged).
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    /// `capset` failed.
    #[error("clearing the capability sets: {0}")]
    Capset(std::io::Error),
}

/// The allow-list as an OCI seccomp profile: everything else fails with
/// `EPERM`.
pub fn profile() -> Result<LinuxSeccomp, SandboxError> {
    let names: Vec<String> = ALLOWED.iter().map(|s| s.to_string()).collect();
    let allowed = LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActAllow)
        .build()?;
    let kvm_run = LinuxSeccompArgBuilder::default()
        .index(1usize)
        .value(KVM_RUN)
        .op(LinuxSeccompOperator::ScmpCmpEq)
        .build()?;
    let ioctl: LinuxSyscall = LinuxSyscallBuilder::default()
        .names(vec!["ioctl".to_string()])
        .action(LinuxSeccompAction::ScmpActAllow)
        .args(vec![kvm_run])
        .build()?;
    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(libc::EPERM as u32)
        .syscalls(vec![allowed, ioctl])
        .build()?)
}

/// Drops every capability (bounding, effective, permitted, inheritable),
/// sets `no_new_privs` and loads the allow-list filter into the calling thread; threads it
/// starts afterwards inherit both.
pub fn lockdown() -> Result<(), SandboxError> {
    let filter = Filter::compile(&profile()?)?;
    drop_capabilities()?;
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(SandboxError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    filter.load()?;
    Ok(())
}

fn drop_capabilities() -> Result<(), SandboxError> {
    for cap in 0..=last_cap() {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no
        // memory.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            let source = std::io::Error::last_os_error();
            if source.raw_os_error() != Some(libc::EINVAL) {
                return Err(SandboxError::Bounding { cap, source });
            }
        }
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: header and data are valid for the call and laid out as the
    // kernel's v3 capability structures (one header, two data words).
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(SandboxError::Capset(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Highest capability number the kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// `_LINUX_CAPABILITY_VERSION_3`.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
