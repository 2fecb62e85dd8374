//! The container's view of the system, and the syscalls denied outright.

use std::time::{Duration, SystemTime};

use super::harness::{ensure, policy, supervise, view, Rootfs, Setup};
use super::ops::*;
use crate::{Policy, SystemView};

const MIB: u64 = 1024 * 1024;

/// A view of a container with 256 MiB, half a CPU, up for 1000 s.
fn limited() -> SystemView {
    SystemView::new(SystemTime::now() - Duration::from_secs(1000))
        .with_memory_limit(256 * MIB)
        .with_cpu_quota(50_000, 100_000)
}

/// The number of a `Key: value` line's first number.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn the_system_view_shows_the_containers_limits() {
    let rootfs = Rootfs::new();
    let policy = Policy {
        kernel_release: Some("6.1.0-strata".into()),
        ..policy()
    };
    let setup = Setup {
        hostname: Some("target-host"),
        ..Setup::default()
    };
    let stats = supervise(&rootfs, policy, limited(), setup, || {
        let meminfo = read_file("/proc/meminfo").map_err(|e| format!("meminfo: {e}"))?;
        ensure!(
            field(&meminfo, "MemTotal:") == Some(256 * 1024),
            "meminfo:\n{meminfo}"
        );
        ensure!(
            field(&meminfo, "MemFree:").is_some_and(|f| f <= 256 * 1024),
            "MemFree:\n{meminfo}"
        );
        let fd = open("/proc/meminfo", libc::O_RDONLY | libc::O_CLOEXEC)
            .map_err(|e| format!("meminfo: {e}"))?;
        // SAFETY: write reads one byte.
        let written = unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
        ensure!(written < 0, "the memfd is writable");
        close(fd);
        ensure!(
            open("/proc/meminfo", libc::O_WRONLY) == Err(libc::EACCES),
            "write-open of meminfo"
        );

        let cpuinfo = read_file("/proc/cpuinfo").map_err(|e| format!("cpuinfo: {e}"))?;
        ensure!(
            cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count()
                == 1,
            "cpuinfo:\n{cpuinfo}"
        );
        let stat = read_file("/proc/stat").map_err(|e| format!("stat: {e}"))?;
        ensure!(
            stat.lines().filter(|l| l.starts_with("cpu")).count() == 2,
            "stat:\n{stat}"
        );
        ensure!(
            read_file("/sys/devices/system/cpu/online") == Ok("0\n".into()),
            "cpu/online"
        );
        let uptime = read_file("/proc/uptime").map_err(|e| format!("uptime: {e}"))?;
        let up: f64 = uptime
            .split_whitespace()
            .next()
            .and_then(|u| u.parse().ok())
            .unwrap_or(0.0);
        ensure!((1000.0..1100.0).contains(&up), "uptime {uptime}");

        // nproc: sched_getaffinity.
        // SAFETY: an all-zero cpu_set_t is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: sched_getaffinity writes at most the size given.
        let ret =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        ensure!(ret == 0, "sched_getaffinity: {}", errno());
        // SAFETY: CPU_COUNT reads the set.
        let n = unsafe { libc::CPU_COUNT(&set) };
        ensure!(n == 1, "{n} cpus");

        // SAFETY: an all-zero sysinfo is valid; sysinfo writes one.
        let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let ret = unsafe { libc::sysinfo(&mut info) };
        ensure!(ret == 0, "sysinfo: {}", errno());
        ensure!(
            info.totalram as u64 * u64::from(info.mem_unit) == 256 * MIB,
            "totalram {}",
            info.totalram
        );
        ensure!(
            info.freeram as u64 * u64::from(info.mem_unit) <= 256 * MIB,
            "freeram {}",
            info.freeram
        );
        ensure!(
            (1000..1100).contains(&info.uptime),
            "sysinfo uptime {}",
            info.uptime
        );

        // SAFETY: an all-zero utsname is valid; uname writes one.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        ensure!(unsafe { libc::uname(&mut uts) } == 0, "uname: {}", errno());
        let text = |f: &[libc::c_char]| {
            f.iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8 as char)
                .collect::<String>()
        };
        ensure!(
            text(&uts.release) == "6.1.0-strata",
            "release {}",
            text(&uts.release)
        );
        ensure!(
            text(&uts.nodename) == "target-host",
            "nodename {}",
            text(&uts.nodename)
        );
        ensure!(
            text(&uts.sysname) == "Linux",
            "sysname {}",
            text(&uts.sysname)
        );
        Ok(())
    });
    for call in ["sysinfo", "uname", "sched_getaffinity"] {
        assert_eq!(stats.get(call).emulated, 1, "{call}: {stats}");
    }
}

#[test]
fn without_limits_the_host_shows_through() {
    let rootfs = Rootfs::new();
    let host_cpus = std::thread::available_parallelism().unwrap().get();
    let stats = supervise(&rootfs, policy(), view(), Setup::default(), || {
        // SAFETY: an all-zero cpu_set_t is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: sched_getaffinity writes at most the size given.
        let ret =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        ensure!(ret == 0, "sched_getaffinity: {}", errno());
        // SAFETY: CPU_COUNT reads the set.
        let n = unsafe { libc::CPU_COUNT(&set) } as usize;
        ensure!(n == host_cpus, "{n} cpus, host has {host_cpus}");
        let meminfo = read_file("/proc/meminfo").map_err(|e| format!("meminfo: {e}"))?;
        let host = std::fs::read_to_string("/proc/meminfo").map_err(|e| e.to_string());
        ensure!(
            field(&meminfo, "MemTotal:") == host.ok().and_then(|h| field(&h, "MemTotal:")),
            "MemTotal"
        );
        Ok(())
    });
    assert_eq!(stats.get("sched_getaffinity").continued, 1, "{stats}");
}

/// A raw syscall's result, or `-errno`.
fn raw(nr: libc::c_long, a: u64, b: u64, c: u64) -> i64 {
    // SAFETY: the calls below take integers, or pointers the kernel checks
    // (NULL here) and fails on before touching anything.
    let ret = unsafe { libc::syscall(nr, a, b, c) };
    if ret < 0 {
        -i64::from(errno())
    } else {
        ret
    }
}

#[test]
fn dangerous_syscalls_are_denied_in_the_kernel() {
    let rootfs = Rootfs::new();
    let stats = supervise(&rootfs, policy(), view(), Setup::default(), || {
        let eperm = -i64::from(libc::EPERM);
        for (name, nr, a) in [
            ("bpf", libc::SYS_bpf, 0),
            ("keyctl", libc::SYS_keyctl, 0),
            ("userfaultfd", libc::SYS_userfaultfd, 0),
            ("unshare", libc::SYS_unshare, libc::CLONE_NEWNS as u64),
            ("mount", libc::SYS_mount, 0),
            ("umount2", libc::SYS_umount2, 0),
            ("io_uring_setup", libc::SYS_io_uring_setup, 1),
            ("ptrace", libc::SYS_ptrace, libc::PTRACE_TRACEME as u64),
            ("perf_event_open", libc::SYS_perf_event_open, 0),
            ("open_tree", libc::SYS_open_tree, 0),
        ] {
            let ret = raw(nr, a, 0, 0);
            ensure!(ret == eperm, "{name} returned {ret}");
        }
        Ok(())
    });
    assert_eq!(
        stats.get("unshare").notified,
        0,
        "denied in the kernel: {stats}"
    );
    assert_eq!(stats.get("bpf").notified, 0, "{stats}");
}

#[test]
fn a_class_can_allow_a_denied_syscall() {
    let rootfs = Rootfs::new();
    let policy = Policy {
        allow_syscalls: vec!["unshare".into()],
        ..policy()
    };
    let stats = supervise(&rootfs, policy, view(), Setup::default(), || {
        let ret = raw(libc::SYS_unshare, libc::CLONE_NEWUTS as u64, 0, 0);
        ensure!(ret == 0, "unshare returned {ret}");
        ensure!(
            raw(libc::SYS_bpf, 0, 0, 0) == -i64::from(libc::EPERM),
            "bpf still denied"
        );
        Ok(())
    });
    assert_eq!(stats.get("unshare").continued, 1, "{stats}");
}

#[test]
fn syscalls_of_another_abi_kill_the_caller() {
    // An x32 openat would otherwise match no rule of the x86_64 filter and
    // run unmediated.
    let rootfs = Rootfs::new();
    supervise(&rootfs, policy(), view(), Setup::default(), || {
        // SAFETY: the child makes one system call and leaves through _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: the x32 openat reads the NUL-terminated path.
            unsafe {
                libc::syscall(
                    0x4000_0000 | 257,
                    libc::AT_FDCWD,
                    c"/etc/secret".as_ptr(),
                    0,
                )
            };
            // SAFETY: _exit ends the child at once.
            unsafe { libc::_exit(0) };
        }
        ensure!(pid > 0, "fork: {}", errno());
        let mut status = 0;
        // SAFETY: waitpid writes the status.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        ensure!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "x32 call: status {status:#x}"
        );
        Ok(())
    });
}
