//! `isolation`: a battery of escape and visibility checks, one JSON line
//! each: `{"probe": NAME, "result": "blocked"|"allowed"|"info"|"skipped",
//! "errno": NAME|null, "detail": TEXT}`.
//!
//! A system call counts as blocked when it fails with `EPERM`, `EACCES`
//! or `ENOSYS` (a permission check or a filter stopped it) and as allowed
//! when it succeeds or fails for any other reason (the kernel got past the
//! permission checks and looked at the arguments). Whatever a successful
//! check created is undone at once.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::json;

use crate::errno;

/// How long `--denied` waits for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The global, harmless sysctl the write check writes its own value back to.
const SYSCTL: &str = "/proc/sys/vm/swappiness";

/// The outcome of one check.
struct Outcome {
    result: &'static str,
    errno: Option<i32>,
    detail: String,
}

impl Outcome {
    fn allowed(detail: impl Into<String>) -> Self {
        Self {
            result: "allowed",
            errno: None,
            detail: detail.into(),
        }
    }

    fn blocked(errno: Option<i32>, detail: impl Into<String>) -> Self {
        Self {
            result: "blocked",
            errno,
            detail: detail.into(),
        }
    }

    fn info(detail: impl Into<String>) -> Self {
        Self {
            result: "info",
            errno: None,
            detail: detail.into(),
        }
    }

    fn skipped(detail: impl Into<String>) -> Self {
        Self {
            result: "skipped",
            errno: None,
            detail: detail.into(),
        }
    }

    /// Classifies a raw system call return (`ret < 0` with `err`) as the
    /// module docs describe.
    fn of_syscall(ret: libc::c_long, err: i32, what: &str) -> Self {
        if ret >= 0 {
            Self::allowed(format!("{what} succeeded"))
        } else if matches!(err, libc::EPERM | libc::EACCES | libc::ENOSYS) {
            Self::blocked(Some(err), format!("{what} refused"))
        } else {
            Self {
                result: "allowed",
                errno: Some(err),
                detail: format!("{what} passed the permission checks and failed later"),
            }
        }
    }

    fn print(&self, probe: &str) {
        println!(
            "{}",
            json!({
                "probe": probe,
                "result": self.result,
                "errno": self.errno.map(errno::name),
                "detail": self.detail,
            })
        );
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// Closes `fd` if a check's system call returned one.
fn close_if_fd(ret: libc::c_long) {
    if ret >= 0 {
        // SAFETY: close(2) of a descriptor the check just received.
        unsafe {
            libc::close(ret as libc::c_int);
        }
    }
}

/// Runs `ret = f()` and returns it with the errno it left.
fn call(f: impl FnOnce() -> libc::c_long) -> (libc::c_long, i32) {
    let ret = f();
    (ret, if ret < 0 { errno::last() } else { 0 })
}

/// Host processes are visible if kernel threads are: they live only in
/// the initial PID namespace (children of PID 0 other than PID 1).
fn host_processes() -> Outcome {
    let mut total = 0;
    let mut kernel_threads = 0;
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        total += 1;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if pid != 1 && ppid == Some(0) {
            kernel_threads += 1;
        }
    }
    let detail = format!("{total} processes visible, {kernel_threads} kernel threads");
    if kernel_threads > 0 {
        Outcome::allowed(detail)
    } else {
        Outcome::blocked(None, detail)
    }
}

fn mount_tmpfs() -> Outcome {
    let dir = format!("/tmp/strata-probe-mnt.{}", std::process::id());
    if let Err(e) = fs::create_dir(&dir) {
        return Outcome::skipped(format!("creating {dir}: {e}"));
    }
    let (target, fstype) = (c(&dir), c("tmpfs"));
    let (ret, err) = call(|| {
        // SAFETY: mount(2) with valid NUL-terminated strings and no data.
        unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        }
        .into()
    });
    if ret == 0 {
        // SAFETY: umount2(2) of the mount just made.
        unsafe {
            libc::umount2(target.as_ptr(), libc::MNT_DETACH);
        }
    }
    let _ = fs::remove_dir(&dir);
    Outcome::of_syscall(ret, err, "mount of a tmpfs")
}

fn load_module() -> Outcome {
    let f = match fs::File::open("/dev/null") {
        Ok(f) => f,
        Err(e) => return Outcome::skipped(format!("opening /dev/null: {e}")),
    };
    let params = c("");
    let fd = std::os::unix::io::AsRawFd::as_raw_fd(&f);
    // SAFETY: finit_module(2) on an open fd with empty parameters; /dev/null
    // holds no module, so nothing can be loaded.
    let (ret, err) =
        call(|| unsafe { libc::syscall(libc::SYS_finit_module, fd, params.as_ptr(), 0) });
    Outcome::of_syscall(ret, err, "finit_module(/dev/null)")
}

fn raw_socket() -> Outcome {
    let (ret, err) = call(|| {
        // SAFETY: socket(2) with constant arguments.
        unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_ICMP,
            )
        }
        .into()
    });
    close_if_fd(ret);
    Outcome::of_syscall(ret, err, "socket(AF_INET, SOCK_RAW)")
}

/// Attaches to `pid`, waits for the attach stop and detaches again.
fn ptrace_attach(pid: libc::pid_t) -> (libc::c_long, i32) {
    let null = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: ptrace(2) PTRACE_ATTACH with no address or data.
    let (ret, err) = call(|| unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, null, null) });
    if ret == 0 {
        let mut status = 0;
        // SAFETY: waitpid(2) for the attach stop of our tracee.
        unsafe {
            libc::waitpid(pid, &mut status, libc::__WALL);
        }
        // SAFETY: detaches the stopped tracee, suppressing the SIGSTOP.
        unsafe {
            libc::ptrace(libc::PTRACE_DETACH, pid, null, null);
        }
    }
    (ret, err)
}

fn ptrace_sibling() -> Outcome {
    // SAFETY: the probe is single-threaded; the child only pauses until
    // it is killed.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Outcome::skipped(format!("fork: {}", errno::name(errno::last())));
    }
    if pid == 0 {
        loop {
            // SAFETY: pause(2) just waits for a signal.
            unsafe {
                libc::pause();
            }
        }
    }
    let (ret, err) = ptrace_attach(pid);
    // SAFETY: kill(2) of the child forked above.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let mut status = 0;
    // SAFETY: waitpid(2) reaps the child forked above.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
    }
    Outcome::of_syscall(ret, err, "PTRACE_ATTACH to a forked child")
}

fn ptrace_init() -> Outcome {
    if std::process::id() == 1 {
        return Outcome::skipped("the probe itself is PID 1");
    }
    let (ret, err) = ptrace_attach(1);
    Outcome::of_syscall(ret, err, "PTRACE_ATTACH to PID 1")
}

fn read_kcore() -> Outcome {
    let mut f = match fs::File::open("/proc/kcore") {
        Ok(f) => f,
        Err(e) => return Outcome::blocked(e.raw_os_error(), "opening /proc/kcore failed"),
    };
    let mut b = [0u8; 64];
    match f.read(&mut b) {
        Ok(0) => Outcome::blocked(None, "/proc/kcore reads as empty (masked)"),
        Ok(n) => Outcome::allowed(format!("read {n} bytes of /proc/kcore")),
        Err(e) => Outcome::blocked(e.raw_os_error(), "reading /proc/kcore failed"),
    }
}

fn write_proc_sys() -> Outcome {
    let value = match fs::read(SYSCTL) {
        Ok(v) => v,
        Err(e) => return Outcome::blocked(e.raw_os_error(), format!("reading {SYSCTL} failed")),
    };
    let written = fs::OpenOptions::new()
        .write(true)
        .open(SYSCTL)
        .and_then(|mut f| f.write_all(&value));
    match written {
        Ok(()) => Outcome::allowed(format!("wrote {SYSCTL} (its own value)")),
        Err(e) => Outcome::blocked(e.raw_os_error(), format!("writing {SYSCTL} failed")),
    }
}

fn bpf() -> Outcome {
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size,
    // max_entries; the rest zero.
    let mut attr = [0u32; 32];
    attr[..4].copy_from_slice(&[2, 4, 4, 1]);
    let size = std::mem::size_of_val(&attr);
    // SAFETY: bpf(2) BPF_MAP_CREATE with a valid, zero-padded attribute
    // buffer of `size` bytes.
    let (ret, err) = call(|| unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), size) });
    close_if_fd(ret);
    Outcome::of_syscall(ret, err, "bpf(BPF_MAP_CREATE) of an array map")
}

fn userfaultfd() -> Outcome {
    // SAFETY: userfaultfd(2) with a constant flag.
    let (ret, err) = call(|| unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) });
    close_if_fd(ret);
    Outcome::of_syscall(ret, err, "userfaultfd")
}

fn keyctl() -> Outcome {
    const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    // SAFETY: keyctl(2) KEYCTL_GET_KEYRING_ID only reads an ID.
    let (ret, err) = call(|| unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_SESSION_KEYRING,
            0,
        )
    });
    Outcome::of_syscall(ret, err, "keyctl(KEYCTL_GET_KEYRING_ID)")
}

fn unshare_user() -> Outcome {
    // SAFETY: the probe is single-threaded; the child only calls unshare
    // and leaves through _exit with the errno as its status.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Outcome::skipped(format!("fork: {}", errno::name(errno::last())));
    }
    if pid == 0 {
        // SAFETY: unshare(2) in the child, which exits right after.
        let r = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
        let code = if r == 0 { 0 } else { errno::last() };
        // SAFETY: _exit(2) ends the child without running the parent's
        // destructors.
        unsafe { libc::_exit(code) }
    }
    let mut status = 0;
    // SAFETY: waitpid(2) reaps the child forked above.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        return Outcome::skipped(format!("the child ended with wait status {status:#x}"));
    };
    let ret = if code == 0 { 0 } else { -1 };
    Outcome::of_syscall(ret, code, "unshare(CLONE_NEWUSER)")
}

fn perf_event_open() -> Outcome {
    // struct perf_event_attr (PERF_ATTR_SIZE_VER0 = 64 bytes): type
    // PERF_TYPE_SOFTWARE (1), size, config PERF_COUNT_SW_CPU_CLOCK (0),
    // flags disabled | exclude_kernel | exclude_hv.
    let mut attr = [0u64; 8];
    attr[0] = 1 | (64 << 32);
    attr[5] = 1 | (1 << 5) | (1 << 6);
    // SAFETY: perf_event_open(2) for this process on any CPU with a valid
    // 64-byte attribute.
    let (ret, err) =
        call(|| unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0) });
    close_if_fd(ret);
    Outcome::of_syscall(ret, err, "perf_event_open of a software counter")
}

fn io_uring_setup() -> Outcome {
    // struct io_uring_params is 120 bytes; all zero asks for defaults.
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup(2) with one entry and a valid, zeroed
    // parameter block the kernel fills in.
    let (ret, err) =
        call(|| unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) });
    close_if_fd(ret);
    Outcome::of_syscall(ret, err, "io_uring_setup")
}

fn kernel_release() -> Outcome {
    // SAFETY: an all-zero utsname is a valid value of this C struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname(2) fills in a valid utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Outcome::skipped(format!("uname: {}", errno::name(errno::last())));
    }
    let release: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as u8)
        .collect();
    Outcome::info(String::from_utf8_lossy(&release).into_owned())
}

fn hidden_path(path: &str) -> Outcome {
    match fs::symlink_metadata(path) {
        Ok(_) => Outcome::allowed(format!("{path} is visible")),
        Err(e) => Outcome::blocked(e.raw_os_error(), format!("{path} is not visible")),
    }
}

fn denied_connect(addr: &str) -> Outcome {
    let Ok(sa) = addr.parse::<SocketAddr>() else {
        return Outcome::skipped(format!("{addr:?} is not an IP address and port"));
    };
    match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
        Ok(_) => Outcome::allowed(format!("connected to {addr}")),
        Err(e) => Outcome::blocked(e.raw_os_error(), format!("cannot connect to {addr}")),
    }
}

/// A named check.
type Check = (&'static str, fn() -> Outcome);

/// Runs every check and prints one line each; `hidden` is a path that
/// must not be visible and `denied` an address that must not be reachable.
pub fn run(hidden: Option<&str>, denied: Option<&str>) {
    let checks: [Check; 15] = [
        ("host_processes", host_processes),
        ("mount_tmpfs", mount_tmpfs),
        ("load_module", load_module),
        ("raw_socket", raw_socket),
        ("ptrace_sibling", ptrace_sibling),
        ("ptrace_init", ptrace_init),
        ("read_kcore", read_kcore),
        ("write_proc_sys", write_proc_sys),
        ("bpf", bpf),
        ("userfaultfd", userfaultfd),
        ("keyctl", keyctl),
        ("unshare_user", unshare_user),
        ("perf_event_open", perf_event_open),
        ("io_uring_setup", io_uring_setup),
        ("kernel_release", kernel_release),
    ];
    for (name, check) in checks {
        check().print(name);
    }
    if let Some(p) = hidden {
        hidden_path(p).print("hidden_path");
    }
    if let Some(a) = denied {
        denied_connect(a).print("denied_connect");
    }
}
