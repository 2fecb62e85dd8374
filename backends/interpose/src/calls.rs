//! The syscalls the interposer deals with: the ones it mediates (one table
//! that both the filter and the dispatcher are built from) and the ones it
//! denies outright.

/// Syscalls the filter refuses with `EPERM` in the kernel, unless the
/// class's `allow_syscalls` names them. Each reaches kernel state that
/// container isolation does not cover, or bypasses the interposer itself:
///
/// * `bpf`, `init_module`, `finit_module`, `delete_module`, `kexec_load`,
///   `kexec_file_load`: load code into, or replace, the shared kernel.
/// * `perf_event_open`: host-wide performance counters, a side channel and
///   a long list of kernel bugs.
/// * `userfaultfd`: stalls the kernel inside a page fault at a moment the
///   caller chooses, the usual tool for winning kernel races.
/// * `keyctl`, `add_key`, `request_key`: the kernel keyring is not
///   namespaced.
/// * `mount`, `umount2`, `pivot_root`, `fsopen`, `fsconfig`, `fsmount`,
///   `fspick`, `move_mount`, `open_tree`, `mount_setattr`: change the
///   mount table, which could uncover what the masking mounts behind the
///   hidden and read-only paths cover.
/// * `unshare`, `setns`: new or other namespaces (a new user namespace
///   grants a full capability set inside it, and a new mount namespace
///   invalidates what the supervisor knows about the caller's root).
/// * `io_uring_setup`, `io_uring_enter`, `io_uring_register`: operations
///   submitted through a ring never pass through seccomp, so a ring would
///   open, connect and send behind the interposer's back.
/// * `ptrace`, `process_vm_writev`, `pidfd_getfd`: reach into another
///   process. Mediating `ptrace` would mean translating the pids of the
///   caller's pid namespace and re-checking the tracee on every request;
///   denied instead (strace and gdb do not work in the class).
/// * `open_by_handle_at`: opens a file by handle, bypassing every path
///   check (the "shocker" escape when `CAP_DAC_READ_SEARCH` is held).
/// * `swapon`, `swapoff`, `reboot`, `syslog`, `acct`, `settimeofday`,
///   `clock_settime`, `clock_adjtime`, `quotactl`, `lookup_dcookie`,
///   `iopl`, `ioperm`, `uselib`: host-wide state or hardware access.
pub const DENIED_BY_DEFAULT: &[&str] = &[
    "bpf",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "unshare",
    "setns",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "ptrace",
    "process_vm_writev",
    "pidfd_getfd",
    "open_by_handle_at",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "quotactl",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "uselib",
];

/// Defines [`Call`] with the syscall name of each variant.
macro_rules! calls {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// A mediated syscall.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum Call {
            $($(#[$doc])* $variant,)*
        }

        impl Call {
            /// Every mediated syscall.
            pub(crate) const ALL: &'static [Call] = &[$(Call::$variant,)*];

            /// The syscall's name, as libseccomp and the audit log know it.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Call::$variant => $name,)*
                }
            }
        }
    };
}

calls! {
    /// `open(path, flags, mode)`.
    Open = "open",
    /// `openat(dirfd, path, flags, mode)`.
    Openat = "openat",
    /// `openat2(dirfd, path, how, size)`.
    Openat2 = "openat2",
    /// `creat(path, mode)`.
    Creat = "creat",
    /// `stat(path, buf)`.
    Stat = "stat",
    /// `lstat(path, buf)`.
    Lstat = "lstat",
    /// `newfstatat(dirfd, path, buf, flags)`.
    Newfstatat = "newfstatat",
    /// `statx(dirfd, path, flags, mask, buf)`.
    Statx = "statx",
    /// `access(path, mode)`.
    Access = "access",
    /// `faccessat(dirfd, path, mode)`.
    Faccessat = "faccessat",
    /// `faccessat2(dirfd, path, mode, flags)`.
    Faccessat2 = "faccessat2",
    /// `readlink(path, buf, size)`.
    Readlink = "readlink",
    /// `readlinkat(dirfd, path, buf, size)`.
    Readlinkat = "readlinkat",
    /// `execve(path, argv, envp)`.
    Execve = "execve",
    /// `execveat(dirfd, path, argv, envp, flags)`.
    Execveat = "execveat",
    /// `unlink(path)`.
    Unlink = "unlink",
    /// `unlinkat(dirfd, path, flags)`.
    Unlinkat = "unlinkat",
    /// `rename(old, new)`.
    Rename = "rename",
    /// `renameat(olddirfd, old, newdirfd, new)`.
    Renameat = "renameat",
    /// `renameat2(olddirfd, old, newdirfd, new, flags)`.
    Renameat2 = "renameat2",
    /// `mkdir(path, mode)`.
    Mkdir = "mkdir",
    /// `mkdirat(dirfd, path, mode)`.
    Mkdirat = "mkdirat",
    /// `rmdir(path)`.
    Rmdir = "rmdir",
    /// `link(old, new)`.
    Link = "link",
    /// `linkat(olddirfd, old, newdirfd, new, flags)`.
    Linkat = "linkat",
    /// `symlink(target, linkpath)`.
    Symlink = "symlink",
    /// `symlinkat(target, dirfd, linkpath)`.
    Symlinkat = "symlinkat",
    /// `chmod(path, mode)`.
    Chmod = "chmod",
    /// `fchmodat(dirfd, path, mode)`.
    Fchmodat = "fchmodat",
    /// `fchmodat2(dirfd, path, mode, flags)`.
    Fchmodat2 = "fchmodat2",
    /// `chown(path, uid, gid)`.
    Chown = "chown",
    /// `lchown(path, uid, gid)`.
    Lchown = "lchown",
    /// `fchownat(dirfd, path, uid, gid, flags)`.
    Fchownat = "fchownat",
    /// `truncate(path, length)`.
    Truncate = "truncate",
    /// `mknod(path, mode, dev)`.
    Mknod = "mknod",
    /// `mknodat(dirfd, path, mode, dev)`.
    Mknodat = "mknodat",
    /// `utimensat(dirfd, path, times, flags)`.
    Utimensat = "utimensat",
    /// `utime(path, times)`.
    Utime = "utime",
    /// `utimes(path, times)`.
    Utimes = "utimes",
    /// `futimesat(dirfd, path, times)`.
    Futimesat = "futimesat",
    /// `setxattr(path, name, value, size, flags)`.
    Setxattr = "setxattr",
    /// `lsetxattr(path, name, value, size, flags)`.
    Lsetxattr = "lsetxattr",
    /// `removexattr(path, name)`.
    Removexattr = "removexattr",
    /// `lremovexattr(path, name)`.
    Lremovexattr = "lremovexattr",
    /// `getdents64(fd, buf, count)`, mediated only when the policy hides
    /// paths: it leaves their names out of directory listings.
    Getdents64 = "getdents64",
    /// `uname(buf)`.
    Uname = "uname",
    /// `sysinfo(info)`.
    Sysinfo = "sysinfo",
    /// `sched_getaffinity(pid, size, mask)`.
    SchedGetaffinity = "sched_getaffinity",
    /// `connect(fd, addr, len)`.
    Connect = "connect",
    /// `bind(fd, addr, len)`.
    Bind = "bind",
    /// `sendto(fd, buf, len, flags, addr, addrlen)`, only with an address.
    Sendto = "sendto",
    /// `sendmsg(fd, msg, flags)`.
    Sendmsg = "sendmsg",
    /// `sendmmsg(fd, msgs, count, flags)`.
    Sendmmsg = "sendmmsg",
    /// `setuid(uid)`: changes the caller's credentials.
    Setuid = "setuid",
    /// `setgid(gid)`: changes the caller's credentials.
    Setgid = "setgid",
    /// `setreuid(ruid, euid)`: changes the caller's credentials.
    Setreuid = "setreuid",
    /// `setregid(rgid, egid)`: changes the caller's credentials.
    Setregid = "setregid",
    /// `setresuid(r, e, s)`: changes the caller's credentials.
    Setresuid = "setresuid",
    /// `setresgid(r, e, s)`: changes the caller's credentials.
    Setresgid = "setresgid",
    /// `setfsuid(uid)`: changes the caller's credentials.
    Setfsuid = "setfsuid",
    /// `setfsgid(gid)`: changes the caller's credentials.
    Setfsgid = "setfsgid",
    /// `setgroups(n, list)`: changes the caller's credentials.
    Setgroups = "setgroups",
    /// `capset(header, data)`: changes the caller's credentials.
    Capset = "capset",
    /// `chroot(path)`: changes the root of the caller and its threads.
    Chroot = "chroot",
    /// `umask(mask)`: changes the creation mask of the caller and its
    /// threads.
    Umask = "umask",
    /// `unshare(flags)`, mediated only when the class allows it: may give
    /// the caller another root and user namespace.
    Unshare = "unshare",
    /// `setns(fd, type)`, mediated only when the class allows it: may give
    /// the caller another root and user namespace.
    Setns = "setns",
}

impl Call {
    /// Whether the call only reaches the supervisor so that it forgets what
    /// it cached about the caller (credentials, root, umask); the call
    /// itself then runs in the kernel unchanged.
    pub(crate) fn invalidates(self) -> bool {
        use Call::*;
        matches!(
            self,
            Setuid
                | Setgid
                | Setreuid
                | Setregid
                | Setresuid
                | Setresgid
                | Setfsuid
                | Setfsgid
                | Setgroups
                | Capset
                | Chroot
                | Umask
                | Unshare
                | Setns
        )
    }

    /// Whether the filter mediates the call only when the class allows it
    /// (it is otherwise denied outright).
    pub(crate) fn only_when_allowed(self) -> bool {
        matches!(self, Call::Unshare | Call::Setns)
    }
}
