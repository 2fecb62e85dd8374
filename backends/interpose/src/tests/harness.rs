//! Runs a target: a forked child that enters a fresh mount namespace (and,
//! when asked, network namespace), chroots (or pivots) into a temporary rootfs, drops
//! to another uid if asked, sets no_new_privs and loads the interpose
//! filter; the test takes its listener with `pidfd_getfd` and runs a real
//! [`Supervisor`] until the child and everything it started are gone.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::{filter, Policy, Stats, Supervisor, SystemView};

/// How long a target may run.
const DEADLINE: Duration = Duration::from_secs(60);

/// A temporary root directory for targets, with a few files:
/// `/etc/secret` (root-only 0600), `/etc/hidden/inner`, `/etc/other`, `/data/ro/file`,
/// `/pub/file` (contents "public"), `/home/user` (owned by uid 1000) and
/// empty `/proc` and `/tmp`.
pub struct Rootfs {
    dir: tempfile::TempDir,
}

impl Rootfs {
    /// Creates the rootfs.
    pub fn new() -> Rootfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = Rootfs { dir };
        for d in ["etc/hidden", "data/ro", "pub", "home/user", "proc", "tmp"] {
            std::fs::create_dir_all(rootfs.path(d)).unwrap();
        }
        std::fs::write(rootfs.path("etc/secret"), "secret").unwrap();
        std::fs::write(rootfs.path("etc/other"), "other").unwrap();
        std::fs::write(rootfs.path("etc/hidden/inner"), "inner").unwrap();
        std::fs::write(rootfs.path("data/ro/file"), "read-only").unwrap();
        std::fs::write(rootfs.path("pub/file"), "public").unwrap();
        std::fs::write(rootfs.path("home/user/own"), "own").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            rootfs.path("etc/secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::set_permissions(rootfs.path("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        for p in ["home/user", "home/user/own"] {
            std::os::unix::fs::chown(rootfs.path(p), Some(1000), Some(1000)).unwrap();
        }
        std::fs::set_permissions(
            rootfs.path("home/user/own"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        // The rootfs directory itself must be searchable by uid 1000.
        std::fs::set_permissions(rootfs.dir.path(), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        rootfs
    }

    /// `rel` inside the rootfs, on the host.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The rootfs directory on the host.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// The policy most tests use: `/etc/secret` and `/etc/hidden` hidden,
/// `/data/ro` read-only.
pub fn policy() -> Policy {
    Policy {
        hidden: vec!["/etc/secret".into(), "/etc/hidden".into()],
        read_only: vec!["/data/ro".into()],
        ..Policy::default()
    }
}

/// How the target is set up before the filter is loaded.
#[derive(Clone, Copy, Default)]
pub struct Setup {
    /// Run as this uid and gid (no supplementary groups).
    pub uid: Option<u32>,
    /// Mount a procfs at `/proc` inside the rootfs.
    pub proc: bool,
    /// Enter a new network namespace with `lo` up.
    pub netns: bool,
    /// Enter a new UTS namespace with this host name.
    pub hostname: Option<&'static str>,
    /// Enter the rootfs with `pivot_root` (as container runtimes do)
    /// rather than `chroot`.
    pub pivot: bool,
    /// Run the target as pid 1 of a new pid namespace (the forked child
    /// then only waits for it).
    pub pidns: bool,
    /// Enter a new user namespace first, as its root mapped to host root.
    pub userns: bool,
}

/// In the forked child: enters a new pid namespace and forks its pid 1,
/// which returns to become the target; the child waits for it and leaves
/// with its exit code.
fn in_pid_namespace() {
    // SAFETY: unshare takes an integer; it affects the children only.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        // SAFETY: _exit ends the child at once.
        unsafe { libc::_exit(3) };
    }
    // SAFETY: as in `supervise`: the new child only makes system calls
    // and allocates.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        return;
    }
    let mut status = 0;
    // SAFETY: waitpid writes the status.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let code = if pid > 0 && libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        4
    };
    // SAFETY: _exit ends the child at once.
    unsafe { libc::_exit(code) };
}

/// The target's pid: the forked child, or its child in a pid namespace.
fn target_pid(child: i32, setup: Setup) -> i32 {
    if !setup.pidns {
        return child;
    }
    let children = std::fs::read_to_string(format!("/proc/{child}/task/{child}/children"))
        .expect("reading the child's children");
    children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the child forked the target")
}

/// What a target's body reports: `Err` with a message on failure.
pub type Outcome = Result<(), String>;

/// Fails the body with a message unless `cond`.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!("line {}: {}", line!(), format!($($msg)+)));
        }
    };
}
pub(crate) use ensure;

/// Runs `body` as a target of a supervisor with `policy` and `view`;
/// returns the supervisor's counters. Panics with the body's message if it
/// fails, and checks that nothing is left behind: the child and the
/// supervisor's threads are gone and no mount of the test remains.
pub fn supervise(
    rootfs: &Rootfs,
    policy: Policy,
    view: SystemView,
    setup: Setup,
    body: impl FnOnce() -> Outcome,
) -> Stats {
    let seccomp = filter(&policy).expect("filter");
    let compiled = strata_seccomp::Filter::compile_for_runtime(&seccomp).expect("compile");
    let root = CString::new(rootfs.root().as_os_str().as_encoded_bytes()).unwrap();
    let proc_dir = CString::new(rootfs.path("proc").as_os_str().as_encoded_bytes()).unwrap();
    let (fd_rx, fd_tx) = pipe();
    let (go_rx, go_tx) = pipe();
    let (report_rx, report_tx) = pipe();

    // SAFETY: the child only makes system calls and allocates before it
    // runs `body`, and leaves through _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop((fd_rx, go_tx, report_rx));
        if setup.pidns {
            in_pid_namespace();
        }
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| -> Outcome {
            enter(&root, &proc_dir, setup)?;
            let listener = load(compiled)?;
            write_all(&fd_tx, &listener.as_raw_fd().to_ne_bytes());
            let mut go = [0u8; 1];
            // SAFETY: read writes at most one byte into `go`.
            if unsafe { libc::read(go_rx.as_raw_fd(), go.as_mut_ptr().cast(), 1) } != 1 {
                return Err("the test did not take the listener".into());
            }
            drop(listener);
            body()
        }));
        let code = match result {
            Ok(Ok(())) => 0,
            Ok(Err(msg)) => {
                write_all(&report_tx, msg.as_bytes());
                1
            }
            Err(_) => {
                write_all(&report_tx, b"target panicked");
                2
            }
        };
        // SAFETY: _exit ends the child without running the test runner's
        // exit handlers.
        unsafe { libc::_exit(code) }
    }
    drop((fd_tx, go_rx, report_tx));
    let mut raw = [0u8; 4];
    let mut fd_rx = std::fs::File::from(fd_rx);
    let listener = match fd_rx.read_exact(&mut raw) {
        Ok(()) => Some(take_fd(target_pid(pid, setup), RawFd::from_ne_bytes(raw))),
        Err(_) => None,
    };
    let supervisor = listener.map(|listener| {
        let sup = Supervisor::new(listener, "test".into(), policy, view).expect("supervisor");
        std::thread::spawn(move || sup.run())
    });
    write_all(&go_tx, b"g");
    let status = wait(pid);
    let mut report = String::new();
    std::fs::File::from(report_rx)
        .read_to_string(&mut report)
        .unwrap();
    let stats = supervisor.map(|s| {
        s.join()
            .expect("supervisor thread")
            .expect("supervisor run")
    });
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "target failed (status {status:#x}): {report}"
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(rootfs.root().to_str().unwrap()),
        "a mount of the test was left behind"
    );
    stats.expect("the target never handed over its listener")
}

/// The view most tests use: no limits, started now.
pub fn view() -> SystemView {
    SystemView::new(SystemTime::now())
}

/// In the child: namespaces, root, identity.
fn enter(root: &CString, proc_dir: &CString, setup: Setup) -> Outcome {
    if setup.netns {
        sys(unsafe_unshare(libc::CLONE_NEWNET), "unshare(CLONE_NEWNET)")?;
        loopback_up()?;
    }
    if setup.userns {
        sys(
            unsafe_unshare(libc::CLONE_NEWUSER),
            "unshare(CLONE_NEWUSER)",
        )?;
        for (file, text) in [
            (c"/proc/self/setgroups", "deny"),
            (c"/proc/self/uid_map", "0 0 1"),
            (c"/proc/self/gid_map", "0 0 1"),
        ] {
            // SAFETY: open reads the NUL-terminated path.
            let fd = unsafe { libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            sys(fd, "opening an id map")?;
            // SAFETY: write reads the text's bytes.
            let n = unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
            // SAFETY: close takes an integer.
            unsafe { libc::close(fd) };
            sys(n as i32, "writing an id map")?;
        }
    }
    if let Some(name) = setup.hostname {
        sys(unsafe_unshare(libc::CLONE_NEWUTS), "unshare(CLONE_NEWUTS)")?;
        // SAFETY: sethostname reads `len` bytes of the name.
        let ret = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
        sys(ret, "sethostname")?;
    }
    sys(unsafe_unshare(libc::CLONE_NEWNS), "unshare(CLONE_NEWNS)")?;
    // SAFETY: mount reads the NUL-terminated strings, which live across
    // the call; NULL source and type are allowed for a propagation change.
    let ret = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    sys(ret, "making mounts private")?;
    if setup.pivot {
        // The rootfs becomes a mount of its own, to pivot into.
        // SAFETY: mount reads the NUL-terminated paths.
        let ret = unsafe {
            libc::mount(
                root.as_ptr(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        };
        sys(ret, "binding the rootfs")?;
    }
    if setup.proc {
        // SAFETY: as above.
        let ret = unsafe {
            libc::mount(
                c"proc".as_ptr(),
                proc_dir.as_ptr(),
                c"proc".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        sys(ret, "mounting proc")?;
    }
    if setup.pivot {
        // pivot_root(".", "."), then detach the old root stacked below:
        // the container runtime's way into a rootfs.
        // SAFETY: chdir reads the NUL-terminated path.
        let ret = unsafe { libc::chdir(root.as_ptr()) };
        sys(ret, "chdir into the rootfs")?;
        // SAFETY: pivot_root reads the two NUL-terminated paths.
        let ret = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
        sys(ret as i32, "pivot_root")?;
        // SAFETY: umount2 reads the NUL-terminated path.
        let ret = unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) };
        sys(ret, "detaching the old root")?;
    } else {
        // SAFETY: chroot reads the NUL-terminated path.
        sys(unsafe { libc::chroot(root.as_ptr()) }, "chroot")?;
    }
    // SAFETY: as above.
    sys(unsafe { libc::chdir(c"/".as_ptr()) }, "chdir")?;
    if let Some(uid) = setup.uid {
        // SAFETY: the id calls take integers; setgroups with 0 entries
        // reads nothing.
        sys(unsafe { libc::setgroups(0, std::ptr::null()) }, "setgroups")?;
        // SAFETY: as above.
        sys(unsafe { libc::setgid(uid) }, "setgid")?;
        // SAFETY: as above.
        sys(unsafe { libc::setuid(uid) }, "setuid")?;
    }
    Ok(())
}

fn unsafe_unshare(flags: i32) -> i32 {
    // SAFETY: unshare takes an integer.
    unsafe { libc::unshare(flags) }
}

/// Brings `lo` up in the current network namespace.
fn loopback_up() -> Outcome {
    // SAFETY: socket takes integers.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    sys(sock, "socket")?;
    // SAFETY: socket returned a new fd.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: an all-zero ifreq is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo") {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as i16;
    // SAFETY: SIOCSIFFLAGS reads one ifreq.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) };
    sys(ret, "bringing lo up")
}

/// In the child: loads the filter as a container process would.
fn load(filter: strata_seccomp::Filter) -> Result<OwnedFd, String> {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the rlimit, which lives across the call.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    sys(ret, "setrlimit")?;
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integers.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    sys(ret, "no_new_privs")?;
    match filter.load() {
        Ok(Some(fd)) => Ok(fd),
        Ok(None) => Err("the filter has no listener".into()),
        Err(e) => Err(format!("loading the filter: {e}")),
    }
}

/// `Err` naming `what` and errno if `ret` is negative.
pub fn sys(ret: i32, what: &str) -> Outcome {
    if ret < 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A pipe (read end, write end), close-on-exec.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 returned two new fds that nothing else owns.
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let write = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    (read, write)
}

/// Writes all of `data` (ignoring failures: the reader reports them).
pub fn write_all(fd: &OwnedFd, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        // SAFETY: write reads the given bytes of `data`.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                data[done..].as_ptr().cast(),
                data.len() - done,
            )
        };
        if n <= 0 {
            return;
        }
        done += n as usize;
    }
}

/// Copies fd `fd` of process `pid` with `pidfd_getfd`.
fn take_fd(pid: i32, fd: RawFd) -> OwnedFd {
    // SAFETY: pidfd_open takes integers.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: pidfd_open returned a new fd.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: pidfd_getfd takes fds and integers.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    assert!(got >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
    // SAFETY: pidfd_getfd returned a new fd.
    unsafe { OwnedFd::from_raw_fd(got as i32) }
}

/// Waits for `pid`, killing it after [`DEADLINE`].
fn wait(pid: i32) -> i32 {
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into `status`.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if ret == pid {
            return status;
        }
        if start.elapsed() > DEADLINE {
            // SAFETY: kill and waitpid take integers and the status pointer.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            // SAFETY: as above.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            panic!("target {pid} hung");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
