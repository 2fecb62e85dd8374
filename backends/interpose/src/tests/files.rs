//! The file broker: hidden and read-only paths, opens performed by the
//! supervisor (fd injected, close-on-exec translated, relative paths,
//! the caller's credentials), and `/proc/self` in the target's view.

use std::ffi::CStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::harness::{ensure, policy, supervise, view, Rootfs, Setup};
use super::ops::*;
use crate::Policy;

#[test]
fn hidden_paths_do_not_exist() {
    let rootfs = Rootfs::new();
    let stats = supervise(&rootfs, policy(), view(), Setup::default(), || {
        for path in [
            "/etc/secret",
            "/etc/hidden",
            "/etc/hidden/inner",
            "/etc/../etc/./secret",
            "//etc//hidden/",
        ] {
            ensure!(
                open(path, libc::O_RDONLY) == Err(libc::ENOENT),
                "openat {path}"
            );
            ensure!(
                sys_open(path, libc::O_RDONLY) == Err(libc::ENOENT),
                "open {path}"
            );
            ensure!(stat(path).err() == Some(libc::ENOENT), "stat {path}");
            ensure!(statx(path).err() == Some(libc::ENOENT), "statx {path}");
            ensure!(
                access(path, libc::F_OK) == Err(libc::ENOENT),
                "access {path}"
            );
        }
        ensure!(
            execve("/etc/hidden/inner") == libc::ENOENT,
            "execve of a hidden path"
        );
        // Their neighbours are there, and listings leave them out.
        ensure!(stat("/etc").is_ok(), "stat /etc");
        let mut names: Vec<String> = std::fs::read_dir("/etc")
            .map_err(|e| format!("read_dir: {e}"))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("read_dir: {e}"))?;
        names.sort();
        ensure!(names == ["other"], "/etc lists {names:?}");
        let root: Vec<String> = std::fs::read_dir("/")
            .map_err(|e| format!("read_dir /: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        ensure!(root.iter().any(|n| n == "etc"), "/ lists {root:?}");
        ensure!(
            read_file("/pub/file") == Ok("public".into()),
            "reading /pub/file"
        );
        // Creating a hidden path fails as if its parent were missing.
        ensure!(
            open("/etc/hidden/new", libc::O_CREAT | libc::O_WRONLY) == Err(libc::ENOENT),
            "create below a hidden dir"
        );
        Ok(())
    });
    assert!(stats.get("openat").denied >= 6, "{stats}");
    assert!(stats.get("execve").denied == 1, "{stats}");
    assert!(stats.get("getdents64").emulated >= 1, "{stats}");
    assert!(stats.get("getdents64").continued >= 1, "{stats}");
    assert!(!rootfs.path("etc/hidden/new").exists());
}

#[test]
fn read_only_paths_refuse_changes() {
    let rootfs = Rootfs::new();
    let stats = supervise(&rootfs, policy(), view(), Setup::default(), || {
        ensure!(
            open("/data/ro/file", libc::O_WRONLY) == Err(libc::EROFS),
            "write-open"
        );
        ensure!(
            open("/data/ro/file", libc::O_RDWR) == Err(libc::EROFS),
            "read-write open"
        );
        ensure!(
            open("/data/ro/file", libc::O_RDONLY | libc::O_TRUNC) == Err(libc::EROFS),
            "truncating open"
        );
        ensure!(
            open("/data/ro/new", libc::O_CREAT | libc::O_RDONLY) == Err(libc::EROFS),
            "creating open"
        );
        ensure!(unlink("/data/ro/file") == Err(libc::EROFS), "unlink");
        ensure!(mkdir("/data/ro/dir") == Err(libc::EROFS), "mkdir");
        ensure!(
            rename("/data/ro/file", "/tmp/moved") == Err(libc::EROFS),
            "rename out of it"
        );
        ensure!(
            rename("/pub/file", "/data/ro/moved") == Err(libc::EROFS),
            "rename into it"
        );
        ensure!(
            access("/data/ro/file", libc::W_OK) == Err(libc::EROFS),
            "access W_OK"
        );
        // Reading goes on.
        ensure!(
            read_file("/data/ro/file") == Ok("read-only".into()),
            "reading"
        );
        ensure!(access("/data/ro/file", libc::R_OK).is_ok(), "access R_OK");
        // Outside it, changes work.
        ensure!(mkdir("/tmp/dir").is_ok(), "mkdir in /tmp");
        Ok(())
    });
    assert!(stats.get("openat").denied >= 4, "{stats}");
    assert_eq!(stats.get("unlink").denied, 1, "{stats}");
    assert_eq!(stats.get("rename").denied, 2, "{stats}");
    assert_eq!(
        std::fs::read_to_string(rootfs.path("data/ro/file")).unwrap(),
        "read-only"
    );
    assert!(!rootfs.path("data/ro/new").exists());
    assert!(rootfs.path("tmp/dir").is_dir());
}

#[test]
fn allowed_opens_are_performed_by_the_supervisor() {
    let rootfs = Rootfs::new();
    let stats = supervise(&rootfs, policy(), view(), Setup::default(), || {
        let fd = open("/pub/file", libc::O_RDONLY | libc::O_CLOEXEC)
            .map_err(|e| format!("open: {e}"))?;
        ensure!(fd_flags(fd) == libc::FD_CLOEXEC, "O_CLOEXEC not translated");
        ensure!(read_close(fd) == b"public", "content");
        let fd = sys_open("/pub/file", libc::O_RDONLY).map_err(|e| format!("open: {e}"))?;
        ensure!(fd_flags(fd) == 0, "close-on-exec without O_CLOEXEC");
        close(fd);
        // The target's umask applies to what it creates.
        // SAFETY: umask takes an integer.
        unsafe { libc::umask(0o027) };
        let fd = open("/tmp/made", libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY)
            .map_err(|e| format!("create: {e}"))?;
        // SAFETY: write reads the 2 bytes.
        let written = unsafe { libc::write(fd, b"hi".as_ptr().cast(), 2) };
        ensure!(written == 2, "write");
        close(fd);
        ensure!(
            open("/tmp/made", libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY) == Err(libc::EEXIST),
            "O_EXCL"
        );
        ensure!(
            open("/missing", libc::O_RDONLY) == Err(libc::ENOENT),
            "missing file"
        );
        ensure!(
            open("/pub/file/x", libc::O_RDONLY) == Err(libc::ENOTDIR),
            "file as a dir"
        );
        ensure!(
            open("/pub/file/", libc::O_RDONLY) == Err(libc::ENOTDIR),
            "trailing slash on a file"
        );
        ensure!(
            stat("/pub/file/").err() == Some(libc::ENOTDIR),
            "stat with a trailing slash"
        );
        let fd = open("/pub/", libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| format!("directory with a trailing slash: {e}"))?;
        close(fd);
        // At its fd limit, the caller's open fails with EMFILE.
        let limit = libc::rlimit {
            rlim_cur: 32,
            rlim_max: 32,
        };
        // SAFETY: setrlimit reads the rlimit.
        let ret = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
        ensure!(ret == 0, "setrlimit: {}", errno());
        let mut fds = Vec::new();
        let last = loop {
            match open("/pub/file", libc::O_RDONLY | libc::O_CLOEXEC) {
                Ok(fd) if fds.len() < 64 => fds.push(fd),
                other => break other,
            }
        };
        ensure!(last == Err(libc::EMFILE), "open at the fd limit: {last:?}");
        fds.into_iter().for_each(close);
        // fstat (newfstatat with AT_EMPTY_PATH) stays native.
        let fd = open("/pub/file", libc::O_RDONLY | libc::O_CLOEXEC)
            .map_err(|e| format!("open: {e}"))?;
        for _ in 0..10 {
            // SAFETY: an all-zero stat is valid; fstat writes one.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let ret = unsafe { libc::fstat(fd, &mut st) };
            ensure!(ret == 0 && st.st_size == 6, "fstat");
        }
        close(fd);
        let st = stat("/pub/file").map_err(|e| format!("stat: {e}"))?;
        ensure!(st.st_size == 6, "stat size {}", st.st_size);
        let stx = statx("/data/ro/file").map_err(|e| format!("statx: {e}"))?;
        ensure!(stx.stx_size == 9, "statx size {}", stx.stx_size);
        Ok(())
    });
    let made = std::fs::metadata(rootfs.path("tmp/made")).unwrap();
    assert_eq!(made.permissions().mode() & 0o7777, 0o640);
    assert_eq!(
        std::fs::read_to_string(rootfs.path("tmp/made")).unwrap(),
        "hi"
    );
    assert!(stats.get("openat").emulated >= 3, "{stats}");
    assert!(stats.get("open").emulated >= 1, "{stats}");
    assert!(
        stats.get("newfstatat").emulated + stats.get("statx").emulated >= 2,
        "{stats}"
    );
    assert_eq!(
        stats.get("newfstatat").notified,
        2,
        "fstat is native: {stats}"
    );
}

#[test]
fn relative_paths_resolve_against_the_cwd_and_the_dirfd() {
    relative_paths(Setup::default());
}

#[test]
fn relative_paths_resolve_after_pivot_root() {
    relative_paths(Setup {
        pivot: true,
        proc: true,
        ..Setup::default()
    });
}

/// Relative paths and dirfds in a target entered with `setup`.
fn relative_paths(setup: Setup) {
    let rootfs = Rootfs::new();
    supervise(&rootfs, policy(), view(), setup, || {
        // SAFETY: chdir reads the path.
        ensure!(unsafe { libc::chdir(c"/etc".as_ptr()) } == 0, "chdir");
        ensure!(
            open("secret", libc::O_RDONLY) == Err(libc::ENOENT),
            "relative hidden"
        );
        ensure!(
            open("./hidden/../secret", libc::O_RDONLY) == Err(libc::ENOENT),
            "dotted hidden"
        );
        ensure!(
            read_file("../pub/file") == Ok("public".into()),
            "relative allowed"
        );
        let dir = open("/etc", libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .map_err(|e| format!("open /etc: {e}"))?;
        ensure!(
            openat(dir, "hidden/inner", libc::O_RDONLY) == Err(libc::ENOENT),
            "dirfd hidden"
        );
        let fd = openat(dir, "../pub/file", libc::O_RDONLY)
            .map_err(|e| format!("dirfd allowed: {e}"))?;
        ensure!(read_close(fd) == b"public", "dirfd content");
        ensure!(
            openat(dir, "../../../data/ro/file", libc::O_WRONLY) == Err(libc::EROFS),
            "dirfd read-only"
        );
        ensure!(
            openat(9999, "x", libc::O_RDONLY) == Err(libc::EBADF),
            "bad dirfd"
        );
        let file = open("/pub/file", libc::O_RDONLY | libc::O_CLOEXEC)
            .map_err(|e| format!("open: {e}"))?;
        ensure!(
            openat(file, "x", libc::O_RDONLY) == Err(libc::ENOTDIR),
            "file as dirfd"
        );
        // SAFETY: chdir reads the path.
        let ret = unsafe { libc::chdir(c"/data".as_ptr()) };
        ensure!(ret == 0, "chdir /data");
        ensure!(
            open("ro/file", libc::O_WRONLY) == Err(libc::EROFS),
            "cwd read-only"
        );
        Ok(())
    });
}

#[test]
fn opens_use_the_callers_credentials() {
    let rootfs = Rootfs::new();
    let setup = Setup {
        uid: Some(1000),
        ..Setup::default()
    };
    let stats = supervise(&rootfs, Policy::default(), view(), setup, || {
        ensure!(
            open("/etc/secret", libc::O_RDONLY) == Err(libc::EACCES),
            "root-only file"
        );
        ensure!(stat("/etc/secret").is_ok(), "stat needs no read permission");
        ensure!(read_file("/home/user/own") == Ok("own".into()), "own file");
        ensure!(
            open("/etc/new", libc::O_CREAT | libc::O_WRONLY) == Err(libc::EACCES),
            "create in root's dir"
        );
        let fd = open("/home/user/made", libc::O_CREAT | libc::O_WRONLY)
            .map_err(|e| format!("create: {e}"))?;
        close(fd);
        Ok(())
    });
    let made = std::fs::metadata(rootfs.path("home/user/made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (1000, 1000));
    assert!(!rootfs.path("etc/new").exists());
    assert!(stats.get("openat").emulated >= 4, "{stats}");
}

#[test]
fn proc_self_is_the_target() {
    proc_self(Setup {
        proc: true,
        ..Setup::default()
    });
}

#[test]
fn proc_self_is_the_target_after_pivot_root() {
    proc_self(Setup {
        proc: true,
        pivot: true,
        ..Setup::default()
    });
}

#[test]
fn proc_self_is_the_target_in_its_pid_namespace() {
    proc_self(Setup {
        proc: true,
        pivot: true,
        pidns: true,
        ..Setup::default()
    });
}

/// `/proc/self` in a target entered with `setup`.
fn proc_self(setup: Setup) {
    let rootfs = Rootfs::new();
    let stats = supervise(&rootfs, policy(), view(), setup, || {
        let pid = getpid();
        let status = read_file("/proc/self/status").map_err(|e| format!("status: {e}"))?;
        ensure!(
            status.contains(&format!("\nPid:\t{pid}\n")),
            "status of another process:\n{status}"
        );
        let link = std::fs::read_link("/proc/self").map_err(|e| format!("readlink: {e}"))?;
        ensure!(
            link.to_str() == Some(&pid.to_string()),
            "/proc/self -> {link:?}"
        );
        // A magic link: the kernel resolves it for the target.
        let fd = open("/pub/file", libc::O_RDONLY | libc::O_CLOEXEC)
            .map_err(|e| format!("open: {e}"))?;
        ensure!(
            read_file(&format!("/proc/self/fd/{fd}")) == Ok("public".into()),
            "/proc/self/fd"
        );
        // Symlinks into /proc/self, like /dev/fd and /etc/mtab: the
        // supervisor cannot resolve them for the target, the kernel does.
        let target = std::ffi::CString::new("/proc/self/fd").unwrap();
        // SAFETY: symlink reads the two NUL-terminated paths.
        let ret = unsafe { libc::symlink(target.as_ptr(), c"/tmp/fd".as_ptr()) };
        ensure!(ret == 0, "symlink: {}", errno());
        ensure!(
            read_file(&format!("/tmp/fd/{fd}")) == Ok("public".into()),
            "/tmp/fd/{fd} -> /proc/self/fd/{fd}"
        );
        // SAFETY: symlink reads the two NUL-terminated paths.
        let ret =
            unsafe { libc::symlink(c"../proc/self/status".as_ptr(), c"/tmp/status".as_ptr()) };
        ensure!(ret == 0, "symlink: {}", errno());
        let status = read_file("/tmp/status").map_err(|e| format!("/tmp/status: {e}"))?;
        ensure!(
            status.contains(&format!("\nPid:\t{pid}\n")),
            "/tmp/status is another process's:\n{status}"
        );
        ensure!(
            open("/tmp/missing", libc::O_RDONLY) == Err(libc::ENOENT),
            "missing file"
        );
        Ok(())
    });
    assert!(stats.get("openat").continued >= 4, "{stats}");
}

#[test]
fn a_target_in_a_user_namespace_gets_no_capabilities_of_the_host() {
    // Root of its own user namespace (mapped to host root) holds every
    // capability there, but they reach only files of uids mapped in it:
    // natively it could not read uid 1000's 0600 file, and the supervisor
    // must not read it on its behalf either.
    let rootfs = Rootfs::new();
    let setup = Setup {
        userns: true,
        ..Setup::default()
    };
    let stats = supervise(&rootfs, Policy::default(), view(), setup, || {
        ensure!(
            open("/home/user/own", libc::O_RDONLY) == Err(libc::EACCES),
            "read another uid's private file"
        );
        ensure!(
            read_file("/etc/secret") == Ok("secret".into()),
            "its own file"
        );
        ensure!(
            read_file("/pub/file") == Ok("public".into()),
            "a public file"
        );
        Ok(())
    });
    assert!(stats.get("openat").emulated >= 3, "{stats}");
}

/// Calls `name` on `p` (a file), returning the raw result.
fn path_call(name: &str, p: &CStr) -> i64 {
    let times = [libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_NOW,
    }; 2];
    let mut buf = [0u8; 64];
    let ret = match name {
        // SAFETY: chmod reads the NUL-terminated path.
        "chmod" => unsafe { libc::chmod(p.as_ptr(), 0o600) },
        // SAFETY: chown reads the NUL-terminated path.
        "chown" => unsafe { libc::chown(p.as_ptr(), 0, 0) },
        // SAFETY: lchown reads the NUL-terminated path.
        "lchown" => unsafe { libc::lchown(p.as_ptr(), 0, 0) },
        // SAFETY: truncate reads the NUL-terminated path.
        "truncate" => unsafe { libc::truncate(p.as_ptr(), 0) },
        // SAFETY: utimensat reads the path and the two timespecs.
        "utimensat" => unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0) },
        // SAFETY: link reads both NUL-terminated paths.
        "link" => unsafe { libc::link(p.as_ptr(), c"/tmp/linked".as_ptr()) },
        // SAFETY: setxattr reads the path, the name and one byte of value.
        "setxattr" => unsafe {
            libc::setxattr(p.as_ptr(), c"user.x".as_ptr(), b"1".as_ptr().cast(), 1, 0)
        },
        // SAFETY: unlinkat reads the NUL-terminated path.
        "unlinkat" => unsafe { libc::unlinkat(libc::AT_FDCWD, p.as_ptr(), 0) },
        // SAFETY: readlink reads the path and writes at most buf.len() bytes.
        "readlink" => unsafe {
            libc::readlink(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) as i32
        },
        // SAFETY: symlink reads both NUL-terminated paths.
        "symlink" => unsafe { libc::symlink(c"/pub/file".as_ptr(), p.as_ptr()) },
        // SAFETY: mknod reads the NUL-terminated path.
        "mknod" => unsafe { libc::mknod(p.as_ptr(), libc::S_IFIFO | 0o600, 0) },
        // SAFETY: rmdir reads the NUL-terminated path.
        "rmdir" => unsafe { libc::rmdir(p.as_ptr()) },
        // SAFETY: link reads both NUL-terminated paths.
        "link into" => unsafe { libc::link(c"/pub/file".as_ptr(), p.as_ptr()) },
        other => panic!("no call {other}"),
    };
    i64::from(ret)
}

#[test]
fn every_path_call_honours_the_policy() {
    let rootfs = Rootfs::new();
    std::os::unix::fs::symlink("/pub/file", rootfs.path("data/ro/link")).unwrap();
    let stats = supervise(&rootfs, policy(), view(), Setup::default(), || {
        let (ro, hidden) = (c"/data/ro/file", c"/etc/secret");
        for (name, on_ro) in [
            ("chmod", libc::EROFS),
            ("chown", libc::EROFS),
            ("lchown", libc::EROFS),
            ("truncate", libc::EROFS),
            ("utimensat", libc::EROFS),
            ("link", libc::EROFS),
            ("setxattr", libc::EROFS),
            ("unlinkat", libc::EROFS),
            ("readlink", libc::EINVAL),
        ] {
            ensure!(
                path_call(name, ro) < 0 && errno() == on_ro,
                "{name} on a read-only path: {}",
                errno()
            );
            ensure!(
                path_call(name, hidden) < 0 && errno() == libc::ENOENT,
                "{name} on a hidden path: {}",
                errno()
            );
        }
        for (name, path) in [
            ("symlink", c"/data/ro/new"),
            ("mknod", c"/data/ro/new"),
            ("rmdir", c"/data/ro"),
            ("link into", c"/data/ro/new"),
        ] {
            ensure!(
                path_call(name, path) < 0 && errno() == libc::EROFS,
                "{name}: {}",
                errno()
            );
        }
        // Reading a link below a read-only path is fine.
        let link = std::fs::read_link("/data/ro/link").map_err(|e| format!("readlink: {e}"))?;
        ensure!(
            link == std::path::Path::new("/pub/file"),
            "readlink gave {link:?}"
        );
        Ok(())
    });
    assert_eq!(stats.get("chmod").denied, 2, "{stats}");
    assert_eq!(stats.get("readlink").continued, 2, "{stats}");
    assert_eq!(
        std::fs::metadata(rootfs.path("data/ro/file"))
            .unwrap()
            .len(),
        9,
        "the read-only file was truncated"
    );
}
