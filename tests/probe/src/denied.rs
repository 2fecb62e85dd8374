//! `denied`: issues each system call of a fixed list once, with arguments
//! that change nothing (invalid or empty), and prints `NAME ERRNO` per
//! line (`NAME 0` when the call succeeded). A filter that denies a call
//! shows up as its errno (typically `EPERM`) where the unfiltered kernel
//! answers with the argument error (`EFAULT`, `EINVAL`, `ENOENT`, …).

use std::ffi::CStr;

use crate::errno;

/// A path that exists nowhere, for the calls that take one.
const NOWHERE: &CStr = c"/nonexistent-strata-probe";

/// An empty string, for module parameters.
const EMPTY: &CStr = c"";

/// A file system type.
const TMPFS: &CStr = c"tmpfs";

/// One call of the list: its name, number, six arguments, and whether a
/// success returns a descriptor to close.
struct Call {
    name: &'static str,
    nr: libc::c_long,
    args: [libc::c_long; 6],
    returns_fd: bool,
}

fn ptr(s: &'static CStr) -> libc::c_long {
    s.as_ptr() as libc::c_long
}

/// The list, with the arguments that make each call harmless.
fn calls() -> [Call; 18] {
    let pid = libc::c_long::from(std::process::id() as i32);
    let call = |name, nr, args, returns_fd| Call {
        name,
        nr,
        args,
        returns_fd,
    };
    [
        // BPF_MAP_CREATE without attributes.
        call("bpf", libc::SYS_bpf, [0; 6], true),
        // No attribute block.
        call(
            "perf_event_open",
            libc::SYS_perf_event_open,
            [0, 0, -1, -1, 0, 0],
            true,
        ),
        // Every flag bit set: invalid.
        call(
            "userfaultfd",
            libc::SYS_userfaultfd,
            [-1, 0, 0, 0, 0, 0],
            true,
        ),
        // An operation number that does not exist.
        call("keyctl", libc::SYS_keyctl, [0x7fff, 0, 0, 0, 0, 0], false),
        // No key type.
        call("add_key", libc::SYS_add_key, [0; 6], false),
        call("request_key", libc::SYS_request_key, [0; 6], false),
        // No segments.
        call("kexec_load", libc::SYS_kexec_load, [0; 6], false),
        // No image.
        call(
            "init_module",
            libc::SYS_init_module,
            [0, 0, ptr(EMPTY), 0, 0, 0],
            false,
        ),
        // No file.
        call(
            "finit_module",
            libc::SYS_finit_module,
            [-1, ptr(EMPTY), 0, 0, 0, 0],
            false,
        ),
        // A module that does not exist.
        call(
            "delete_module",
            libc::SYS_delete_module,
            [ptr(NOWHERE), libc::O_NONBLOCK.into(), 0, 0, 0, 0],
            false,
        ),
        // Onto a path that does not exist.
        call(
            "mount",
            libc::SYS_mount,
            [ptr(TMPFS), ptr(NOWHERE), ptr(TMPFS), 0, 0, 0],
            false,
        ),
        call(
            "umount2",
            libc::SYS_umount2,
            [ptr(NOWHERE), 0, 0, 0, 0, 0],
            false,
        ),
        call(
            "pivot_root",
            libc::SYS_pivot_root,
            [ptr(NOWHERE), ptr(NOWHERE), 0, 0, 0, 0],
            false,
        ),
        // No flags: unshares nothing.
        call("unshare", libc::SYS_unshare, [0; 6], false),
        // No descriptor.
        call("setns", libc::SYS_setns, [-1, 0, 0, 0, 0, 0], false),
        // No entries, no parameters.
        call("io_uring_setup", libc::SYS_io_uring_setup, [0; 6], true),
        // Nothing to write, into this process.
        call(
            "process_vm_writev",
            libc::SYS_process_vm_writev,
            [pid, 0, 0, 0, 0, 0],
            false,
        ),
        // PEEKDATA of PID 0, which is never a tracee.
        call(
            "ptrace",
            libc::SYS_ptrace,
            [libc::PTRACE_PEEKDATA.into(), 0, 0, 0, 0, 0],
            false,
        ),
    ]
}

/// Issues `c` and returns its errno, 0 on success.
fn issue(c: &Call) -> i32 {
    let [a, b, d, e, f, g] = c.args;
    // SAFETY: a raw system call whose pointer arguments are null or point
    // at static NUL-terminated strings (see `calls`); none of the calls
    // writes through a pointer it is given.
    let ret = unsafe { libc::syscall(c.nr, a, b, d, e, f, g) };
    if ret < 0 {
        return errno::last();
    }
    if c.returns_fd {
        // SAFETY: close(2) of the descriptor the call just returned.
        unsafe {
            libc::close(ret as libc::c_int);
        }
    }
    0
}

/// Issues every call and prints `NAME ERRNO` lines.
pub fn run() {
    for c in calls() {
        let e = issue(&c);
        let shown = if e == 0 {
            "0".to_owned()
        } else {
            errno::name(e)
        };
        println!("{} {shown}", c.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_is_named_once() {
        let names: Vec<&str> = calls().iter().map(|c| c.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }
}
