//! The shim's ttrpc socket is reachable only by root: it is owned by root,
//! neither it nor its directory is writable by anyone else, and an
//! unprivileged process that tries to connect to it gets EACCES.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_e2e::containerd::{is_strata, shim_socket_path};
use strata_e2e::{runtime_tests, Containerd, RunOptions};

const WAIT: Duration = Duration::from_secs(20);

/// The unprivileged user and group (`nobody`/`nogroup`).
const NOBODY: u32 = 65534;

/// Exit code of the probe child when it could not drop its privileges.
const PROBE_SETUP_FAILED: i32 = 200;

/// The forked child of [`connect_as_nobody`]: drops to [`NOBODY`],
/// connects to `addr` and exits with 0 or connect's `errno`. Only
/// async-signal-safe system calls on memory prepared before the fork.
fn probe(addr: &libc::sockaddr_un, len: libc::socklen_t) -> ! {
    let exit = |code: i32| -> ! {
        // SAFETY: _exit(2) ends the forked child without running anything
        // of the parent's (no destructors, no atexit handlers).
        unsafe { libc::_exit(code) }
    };
    // SAFETY: setgroups(2) with an empty list.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        exit(PROBE_SETUP_FAILED);
    }
    // SAFETY: setgid(2) takes a plain id.
    if unsafe { libc::setgid(NOBODY as libc::gid_t) } != 0 {
        exit(PROBE_SETUP_FAILED);
    }
    // SAFETY: setuid(2) takes a plain id.
    if unsafe { libc::setuid(NOBODY as libc::uid_t) } != 0 {
        exit(PROBE_SETUP_FAILED);
    }
    // SAFETY: getuid(2) cannot fail.
    if unsafe { libc::getuid() } != NOBODY {
        exit(PROBE_SETUP_FAILED);
    }
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        exit(PROBE_SETUP_FAILED + 1);
    }
    // SAFETY: connect(2) with a valid address of `len` bytes.
    let r = unsafe { libc::connect(fd, std::ptr::from_ref(addr).cast(), len) };
    // Reading errno this way allocates nothing.
    exit(if r == 0 {
        0
    } else {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(PROBE_SETUP_FAILED + 2)
    })
}

/// Connects to the Unix socket at `path` from a forked child that first
/// drops to uid and gid [`NOBODY`] with no supplementary groups. Returns
/// 0 if the connection succeeded, otherwise the `errno` of connect(2).
fn connect_as_nobody(path: &Path) -> i32 {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: an all-zero sockaddr_un is a valid (empty) address.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    assert!(bytes.len() < addr.sun_path.len(), "{path:?} is too long");
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: the child runs only `probe`, which makes async-signal-safe
    // system calls on memory prepared before the fork, then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        probe(&addr, len);
    }
    let mut status = 0;
    // SAFETY: waitpid(2) on the child forked above.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    assert!(libc::WIFEXITED(status), "probe died: status {status:#x}");
    let code = libc::WEXITSTATUS(status);
    assert!(
        code < PROBE_SETUP_FAILED,
        "the probe could not become uid {NOBODY} (exit {code})"
    );
    code
}

/// The value of `-socket` on the shim server's command line, without
/// `unix://`, if it has one (Strata's shim has; runc's receives its
/// listener as a file descriptor instead).
fn socket_argument(c: &Containerd, id: &str) -> Option<PathBuf> {
    let shim = c
        .shim_server(id)
        .unwrap_or_else(|| panic!("no shim server for {id}"));
    let arg = shim
        .cmdline
        .windows(2)
        .find(|w| w[0] == "-socket")
        .map(|w| w[1].clone())?;
    let path = arg
        .strip_prefix("unix://")
        .unwrap_or_else(|| panic!("-socket {arg:?} is not a unix:// address"));
    Some(PathBuf::from(path))
}

/// Proves the probe: unprivileged, it can connect to a socket that allows
/// it, and cannot to one that does not.
fn probe_works() {
    let dir = tempfile::Builder::new()
        .prefix("se2e-sockprobe-")
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let open = dir.path().join("open.sock");
    let _open = UnixListener::bind(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(connect_as_nobody(&open), 0, "an open socket refused nobody");
    let closed = dir.path().join("closed.sock");
    let _closed = UnixListener::bind(&closed).unwrap();
    fs::set_permissions(&closed, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(connect_as_nobody(&closed), libc::EACCES);
}

fn root_only_socket(c: &Containerd) {
    probe_works();

    let id = "sockcheck";
    c.run_detached(&RunOptions::new(id, ["sleep", "1000"]))
        .unwrap();
    c.wait_status(id, "RUNNING", WAIT).unwrap();

    let expected = shim_socket_path(c.address(), c.namespace(), id);
    let socket = match socket_argument(c, id) {
        Some(p) => {
            assert_eq!(p, expected, "the shim listens somewhere unexpected");
            p
        }
        None => {
            assert!(
                !is_strata(c.runtime()),
                "Strata's shim server has no -socket argument"
            );
            expected
        }
    };
    let meta =
        fs::metadata(&socket).unwrap_or_else(|e| panic!("shim socket {}: {e}", socket.display()));
    assert!(
        meta.file_type().is_socket(),
        "{} is not a socket",
        socket.display()
    );
    assert_eq!(meta.uid(), 0, "{} is not owned by root", socket.display());
    assert_eq!(
        meta.mode() & 0o022,
        0,
        "{} is writable by group or others: mode {:o}",
        socket.display(),
        meta.mode() & 0o7777
    );
    let dir = socket.parent().unwrap();
    let dmeta = fs::metadata(dir).unwrap();
    assert_eq!(dmeta.uid(), 0, "{} is not owned by root", dir.display());
    assert_eq!(
        dmeta.mode() & 0o002,
        0,
        "{} is writable by others: mode {:o}",
        dir.display(),
        dmeta.mode() & 0o7777
    );

    // Root can connect (the socket is live), nobody cannot.
    UnixStream::connect(&socket)
        .unwrap_or_else(|e| panic!("root cannot connect to {}: {e}", socket.display()));
    assert_eq!(
        connect_as_nobody(&socket),
        libc::EACCES,
        "an unprivileged connect to {} did not fail with EACCES",
        socket.display()
    );

    assert_eq!(c.remove(id).unwrap(), 137);
}

runtime_tests!(root_only_socket);
