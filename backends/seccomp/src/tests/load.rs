//! Filters loaded into forked children: each child makes the system calls
//! and reports through its exit code (0 when everything was as expected,
//! otherwise the number of the first failed check).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use serde_json::json;

use super::child::{self, syscall3};
use super::{profile, seccomp};
use crate::Filter;

fn compile(json: serde_json::Value) -> Filter {
    Filter::compile(&seccomp(json)).expect("profile compiles")
}

fn assert_exited_ok(status: WaitStatus) {
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "child failed: {status:?}"
    );
}

/// Returns `code` from the child unless `ok`.
macro_rules! check {
    ($ok:expr, $code:expr) => {
        if !$ok {
            return $code;
        }
    };
}

/// Loads `filter` in the child, or returns its failure code.
macro_rules! load {
    ($filter:expr) => {
        match child::load($filter) {
            Ok(listener) => listener,
            Err(code) => return code,
        }
    };
}

#[test]
fn errno_with_custom_value_fails_only_the_listed_syscalls() {
    let dir = tempfile::tempdir().unwrap();
    let denied = CString::new(dir.path().join("denied").as_os_str().as_bytes()).unwrap();
    let created = dir.path().join("created");
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["mkdir", "mkdirat"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EXFULL,
        }],
    }));
    assert!(!filter.wants_listener());
    let status = child::run(|| {
        check!(load!(filter).is_none(), 1);
        let path = denied.as_ptr() as u64;
        check!(
            syscall3(libc::SYS_mkdirat, libc::AT_FDCWD as u64, path, 0o755)
                == -i64::from(libc::EXFULL),
            2
        );
        #[cfg(target_arch = "x86_64")]
        check!(
            syscall3(libc::SYS_mkdir, path, 0o755, 0) == -i64::from(libc::EXFULL),
            3
        );
        // Everything else still works.
        check!(std::fs::File::create(&created).is_ok(), 4);
        check!(syscall3(libc::SYS_getpid, 0, 0, 0) > 0, 5);
        0
    });
    assert_exited_ok(status);
    assert!(!dir.path().join("denied").exists());
    assert!(created.exists(), "the child's other syscalls ran");
}

#[test]
fn kill_process_kills_the_child_with_sigsys() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS" }],
    }));
    let status = child::run(|| {
        load!(filter);
        syscall3(libc::SYS_getppid, 0, 0, 0);
        0
    });
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{status:?}"
    );
}

#[test]
fn kill_process_from_a_thread_kills_the_whole_process() {
    // SCMP_ACT_KILL_THREAD would end only the calling thread.
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS" }],
    }));
    let status = child::run(|| {
        load!(filter);
        let thread = std::thread::spawn(|| syscall3(libc::SYS_getppid, 0, 0, 0));
        let _ = thread.join();
        std::thread::sleep(std::time::Duration::from_secs(5));
        0
    });
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{status:?}"
    );
}

#[test]
fn argument_comparisons_decide() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            // Only the query is allowed.
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::EDOM,
                "args": [{ "index": 0, "value": 0xffff_ffff_u32, "op": "SCMP_CMP_NE" }],
            },
            // Two comparisons of one argument: either refuses.
            {
                "names": ["getpriority"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::ENOTTY,
                "args": [
                    { "index": 0, "value": libc::PRIO_PGRP, "op": "SCMP_CMP_EQ" },
                    { "index": 0, "value": libc::PRIO_USER, "op": "SCMP_CMP_EQ" },
                ],
            },
            // Comparisons of two arguments: both must hold.
            {
                "names": ["lseek"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::ESPIPE,
                "args": [
                    { "index": 1, "value": 100, "op": "SCMP_CMP_GT" },
                    { "index": 2, "value": libc::SEEK_SET, "op": "SCMP_CMP_EQ" },
                ],
            },
            {
                "names": ["umask"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::EBADMSG,
                // `value` is the mask, `valueTwo` the masked value.
                "args": [{ "index": 0, "value": 0o1100, "valueTwo": 0o1000, "op": "SCMP_CMP_MASKED_EQ" }],
            },
            {
                "names": ["sched_get_priority_max"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::EL2HLT,
                "args": [{ "index": 0, "value": libc::SCHED_FIFO, "op": "SCMP_CMP_LT" }],
            },
            {
                "names": ["sched_get_priority_min"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::EL3HLT,
                "args": [{ "index": 0, "value": libc::SCHED_RR, "op": "SCMP_CMP_GE" }],
            },
            {
                "names": ["getsid"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::ENOLINK,
                "args": [{ "index": 0, "value": 0, "op": "SCMP_CMP_LE" }],
            },
            {
                "names": ["getpgid"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::ENOSTR,
                "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_GT" }],
            },
        ],
    }));
    let null = c"/dev/null";
    let status = child::run(|| {
        // A session of its own: a session or group leader outside this pid
        // namespace would otherwise read as 0.
        // SAFETY: setsid takes no arguments; the forked child leads no group.
        check!(unsafe { libc::setsid() } > 0, 1);
        load!(filter);
        let pid = syscall3(libc::SYS_getpid, 0, 0, 0) as u64;
        let fail = |e: i32| -i64::from(e);

        check!(syscall3(libc::SYS_personality, 0xffff_ffff, 0, 0) >= 0, 10);
        check!(
            syscall3(libc::SYS_personality, 0, 0, 0) == fail(libc::EDOM),
            11
        );

        let prio = |which: i32| syscall3(libc::SYS_getpriority, which as u64, 0, 0);
        check!(prio(libc::PRIO_PROCESS as i32) >= 0, 20);
        check!(prio(libc::PRIO_PGRP as i32) == fail(libc::ENOTTY), 21);
        check!(prio(libc::PRIO_USER as i32) == fail(libc::ENOTTY), 22);

        // SAFETY: `null` is a NUL-terminated path that outlives the call.
        let fd = unsafe { libc::open(null.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        check!(fd >= 0, 30);
        let seek =
            |offset: u64, whence: i32| syscall3(libc::SYS_lseek, fd as u64, offset, whence as u64);
        check!(seek(50, libc::SEEK_SET) >= 0, 31);
        check!(seek(200, libc::SEEK_CUR) >= 0, 32);
        check!(seek(200, libc::SEEK_SET) == fail(libc::ESPIPE), 33);

        check!(syscall3(libc::SYS_umask, 0o022, 0, 0) >= 0, 40);
        check!(
            syscall3(libc::SYS_umask, 0o1022, 0, 0) == fail(libc::EBADMSG),
            41
        );
        check!(syscall3(libc::SYS_umask, 0o1122, 0, 0) >= 0, 42);

        let max = |policy: i32| syscall3(libc::SYS_sched_get_priority_max, policy as u64, 0, 0);
        check!(max(libc::SCHED_FIFO) > 0, 50);
        check!(max(libc::SCHED_OTHER) == fail(libc::EL2HLT), 51);

        let min = |policy: i32| syscall3(libc::SYS_sched_get_priority_min, policy as u64, 0, 0);
        check!(min(libc::SCHED_FIFO) > 0, 60);
        check!(min(libc::SCHED_RR) == fail(libc::EL3HLT), 61);

        check!(syscall3(libc::SYS_getsid, pid, 0, 0) == pid as i64, 70);
        check!(
            syscall3(libc::SYS_getsid, 0, 0, 0) == fail(libc::ENOLINK),
            71
        );

        check!(syscall3(libc::SYS_getpgid, 0, 0, 0) == pid as i64, 80);
        check!(
            syscall3(libc::SYS_getpgid, pid, 0, 0) == fail(libc::ENOSTR),
            81
        );
        0
    });
    assert_exited_ok(status);
}

#[test]
fn container_default_profile_denies_what_it_does_not_list() {
    let filter = compile(profile::default_profile());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    let status = child::run(|| {
        load!(filter);
        // Ordinary work goes on.
        check!(std::fs::write(&file, b"data").is_ok(), 1);
        check!(
            std::fs::read(&file).map(|d| d == b"data").unwrap_or(false),
            2
        );
        check!(syscall3(libc::SYS_personality, 0xffff_ffff, 0, 0) >= 0, 3);
        // Not listed: the default errno.
        let eperm = -i64::from(libc::EPERM);
        check!(
            syscall3(libc::SYS_unshare, libc::CLONE_NEWUTS as u64, 0, 0) == eperm,
            4
        );
        check!(
            syscall3(libc::SYS_personality, 0x0040_0000, 0, 0) == eperm,
            5
        );
        check!(
            syscall3(libc::SYS_clone3, 0, 0, 0) == -i64::from(libc::ENOSYS),
            6
        );
        check!(
            syscall3(
                libc::SYS_socket,
                libc::AF_VSOCK as u64,
                libc::SOCK_STREAM as u64,
                0
            ) == eperm,
            7
        );
        0
    });
    assert_exited_ok(status);
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
}

#[test]
fn tsync_filters_threads_started_before_loading() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EDOM }],
    }));
    let status = child::run(|| {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = go_rx.recv();
            syscall3(libc::SYS_getppid, 0, 0, 0)
        });
        load!(filter);
        check!(go_tx.send(()).is_ok(), 1);
        check!(thread.join().ok() == Some(-i64::from(libc::EDOM)), 2);
        0
    });
    assert_exited_ok(status);
}

#[test]
fn loading_leaves_no_new_privs_alone() {
    // Without no_new_privs, loading takes CAP_SYS_ADMIN.
    // SAFETY: geteuid only reads the caller's credentials.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to load a filter without no_new_privs");
        return;
    }
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_ERRNO" }],
    }));
    let status = child::run(|| {
        check!(filter.load().is_ok(), 1);
        // SAFETY: PR_GET_NO_NEW_PRIVS takes integer arguments only.
        let no_new_privs = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
        check!(no_new_privs == 0, 2);
        0
    });
    assert_exited_ok(status);
}
