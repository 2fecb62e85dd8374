//! A real program under the supervisor: busybox's shell and tools in a
//! pivoted rootfs of their own pid namespace, limited to 256 MiB and one
//! CPU.

use std::time::SystemTime;

use super::harness::{policy, supervise, Rootfs, Setup};
use crate::{Policy, SystemView};

/// The script the shell runs; each line's output is checked below.
const SCRIPT: &str = "\
cat /pub/file; echo
cat /etc/secret || echo no-secret
ls /etc
echo x > /data/ro/new || echo no-write
mkdir /data/ro/d || echo no-mkdir
free -m | grep Mem:
nproc
uname -r
cat /proc/self/status | grep -c PPid
echo done
";

#[test]
fn a_busybox_shell_sees_the_policy_and_the_view() {
    let rootfs = Rootfs::new();
    std::fs::create_dir_all(rootfs.path("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.path("bin/busybox"))
        .expect("/bin/busybox (Debian's busybox-static) is needed");
    for tool in [
        "sh", "cat", "ls", "echo", "mkdir", "free", "grep", "nproc", "uname",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.path(&format!("bin/{tool}"))).unwrap();
    }
    std::fs::write(rootfs.path("script"), SCRIPT).unwrap();
    let policy = Policy {
        kernel_release: Some("5.15.0-strata".into()),
        ..policy()
    };
    let view = SystemView::new(SystemTime::now())
        .with_memory_limit(256 << 20)
        .with_cpu_quota(100_000, 100_000);
    let setup = Setup {
        pivot: true,
        pidns: true,
        proc: true,
        ..Setup::default()
    };
    let stats = supervise(&rootfs, policy, view, setup, || {
        let sh = c"/bin/sh";
        let args = [
            sh.as_ptr(),
            c"-c".as_ptr(),
            c"PATH=/bin; . /script > /tmp/out 2>&1".as_ptr(),
            std::ptr::null(),
        ];
        let env = [std::ptr::null()];
        // SAFETY: execve reads the path and the NULL-terminated arrays.
        unsafe { libc::execve(sh.as_ptr(), args.as_ptr(), env.as_ptr()) };
        Err(format!("execve: {}", super::ops::errno()))
    });
    let out = std::fs::read_to_string(rootfs.path("tmp/out")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    let expect = |i: usize, ok: &dyn Fn(&str) -> bool| {
        assert!(lines.get(i).is_some_and(|l| ok(l)), "line {i} of:\n{out}");
    };
    expect(0, &|l| l == "public");
    expect(1, &|l| l.ends_with("No such file or directory"));
    expect(2, &|l| l == "no-secret");
    // Listings leave hidden names out.
    expect(3, &|l| l == "other");
    expect(4, &|l| l.ends_with("Read-only file system"));
    expect(5, &|l| l == "no-write");
    expect(6, &|l| l.ends_with("Read-only file system"));
    expect(7, &|l| l == "no-mkdir");
    // total, used, free, shared, buff/cache, available: nothing of the
    // host's memory shows (used would underflow if it did).
    expect(8, &|l| {
        let cols: Vec<u64> = l
            .split_whitespace()
            .skip(1)
            .filter_map(|c| c.parse().ok())
            .collect();
        cols.len() == 6 && cols[0] == 256 && cols.iter().all(|&c| c <= 256)
    });
    expect(9, &|l| l == "1");
    expect(10, &|l| l == "5.15.0-strata");
    expect(11, &|l| l == "1");
    expect(12, &|l| l == "done");
    assert!(stats.get("execve").continued >= 1, "{stats}");
}
