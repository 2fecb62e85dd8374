//! What the supervisor knows about a calling thread: a pidfd naming it, its
//! credentials, creation mask and root. Kept per thread, because reading
//! them from `/proc` costs more than the call being mediated.
//!
//! # Why the cache is correct
//!
//! * An entry is used only while its pidfd's thread is alive: thread ids
//!   are unique among live threads, so a live cached thread with the
//!   calling id is the calling thread (a dead one makes the entry stale and
//!   it is replaced).
//! * A thread's credentials change only by its own syscalls (`set*id`,
//!   `setgroups`, `capset`, `execve`), and its root and umask by `chroot`,
//!   `umask`, `unshare` and `setns` of any thread sharing them. All of these
//!   are mediated, and their handlers drop the whole cache before the
//!   kernel runs them.
//! * An entry is filled from `/proc` while the caller is blocked in the
//!   call being handled (the notification is checked to be still pending
//!   after the reads), so it describes the caller as it is. It is stored
//!   only if no invalidation happened since the reads began (a generation
//!   counter), so a slow handler cannot put back what a concurrent
//!   invalidation dropped.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::notify::Listener;

/// `PIDFD_THREAD` (Linux 6.9): a pidfd for one thread rather than a
/// thread group.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

/// Cache size at which entries of dead threads are first swept out; after
/// a sweep, the next comes at twice the entries left (so sweeps stay rare
/// however many threads live).
const SWEEP_AT: usize = 256;

/// A thread's filesystem identity, as the kernel checks file access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Creds {
    /// Filesystem user id, in the supervisor's user namespace.
    pub fsuid: u32,
    /// Filesystem group id, in the supervisor's user namespace.
    pub fsgid: u32,
    /// Supplementary groups, in the supervisor's user namespace.
    pub groups: Vec<u32>,
    /// Effective capabilities, as a mask. Only meaningful when
    /// `same_userns`.
    pub cap_effective: u64,
    /// Whether the thread is in the supervisor's user namespace. Its
    /// capabilities are otherwise relative to its own namespace and grant
    /// nothing the supervisor could reproduce; they are dropped.
    pub same_userns: bool,
}

/// One calling thread.
pub(crate) struct Thread {
    /// A pidfd for the thread: liveness checks, fetching its fds, signals.
    pub pidfd: OwnedFd,
    /// The thread's credentials.
    pub creds: Creds,
    /// The thread's file creation mask.
    pub umask: u32,
    /// The thread's root directory, opened `O_PATH`.
    pub root: OwnedFd,
    /// The root's path as `/proc/<tid>/root` reads, to turn the paths of
    /// its cwd and fds into paths below the root.
    pub root_path: Vec<u8>,
}

impl Thread {
    /// A copy of the thread's fd `fd` (`pidfd_getfd`), close-on-exec: the
    /// same open file, so that what the supervisor does with it (connect,
    /// send, read a directory) the thread sees done.
    pub(crate) fn fetch_fd(&self, fd: i32) -> io::Result<OwnedFd> {
        // SAFETY: pidfd_getfd takes fds and integers only.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.pidfd.as_raw_fd(), fd, 0) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pidfd_getfd returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
    }

    /// Whether the thread named by the pidfd still runs.
    fn alive(&self) -> bool {
        // SAFETY: signal 0 only checks that the thread exists and may be
        // signalled; the info pointer may be NULL.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                0,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        ret == 0
    }
}

/// The entries, and the size at which dead ones are swept out.
struct Cache {
    entries: HashMap<i32, Arc<Thread>>,
    sweep_at: usize,
}

/// The cache of calling threads.
pub(crate) struct Threads {
    map: Mutex<Cache>,
    generation: AtomicU64,
    /// The supervisor's user namespace (device, inode).
    own_userns: (u64, u64),
}

impl Threads {
    /// An empty cache.
    pub(crate) fn new() -> io::Result<Threads> {
        Ok(Threads {
            map: Mutex::new(Cache {
                entries: HashMap::new(),
                sweep_at: SWEEP_AT,
            }),
            generation: AtomicU64::new(0),
            own_userns: ns_id("/proc/self/ns/user")?,
        })
    }

    /// The thread behind notification `id` from `tid`. `Ok(None)` when the
    /// call is no longer pending.
    pub(crate) fn get(
        &self,
        listener: &Listener,
        id: u64,
        tid: i32,
    ) -> io::Result<Option<Arc<Thread>>> {
        if let Some(thread) = self.lock().entries.get(&tid) {
            if thread.alive() {
                return Ok(Some(Arc::clone(thread)));
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let thread = match self.load(tid) {
            Ok(thread) => Arc::new(thread),
            Err(e) if !listener.is_valid(id) => {
                log::debug!("thread {tid} gone while reading it: {e}");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if !listener.is_valid(id) {
            return Ok(None);
        }
        let mut cache = self.lock();
        if self.generation.load(Ordering::SeqCst) == generation {
            if cache.entries.len() >= cache.sweep_at {
                cache.entries.retain(|_, t| t.alive());
                cache.sweep_at = (cache.entries.len() * 2).max(SWEEP_AT);
            }
            cache.entries.insert(tid, Arc::clone(&thread));
        }
        Ok(Some(thread))
    }

    /// Forgets every thread: called before a syscall that may change a
    /// thread's credentials, root or umask runs.
    pub(crate) fn forget_all(&self) {
        let mut cache = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        cache.entries.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads thread `tid` from `/proc`.
    fn load(&self, tid: i32) -> io::Result<Thread> {
        // SAFETY: pidfd_open takes integer arguments only.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid, PIDFD_THREAD) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pidfd_open returned a new fd that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let status = std::fs::read_to_string(format!("/proc/{tid}/status"))?;
        let (creds, umask) = parse_status(
            &status,
            ns_id(&format!("/proc/{tid}/ns/user"))? == self.own_userns,
        )
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{tid}/status: unexpected format"),
            )
        })?;
        let root_link = format!("/proc/{tid}/root");
        let root = open_path(&root_link)?;
        let root_path = std::fs::read_link(&root_link)?
            .as_os_str()
            .as_bytes()
            .to_vec();
        Ok(Thread {
            pidfd,
            creds,
            umask,
            root,
            root_path,
        })
    }
}

/// Opens `path` with `O_PATH | O_CLOEXEC`.
pub(crate) fn open_path(path: &str) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open reads the NUL-terminated string, which lives across the
    // call.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The (device, inode) of a namespace file.
fn ns_id(path: &str) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// The credentials and umask in a `/proc/<tid>/status` text.
fn parse_status(status: &str, same_userns: bool) -> Option<(Creds, u32)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    // Uid and Gid list real, effective, saved and filesystem ids.
    let fs_id = |name: &str| field(name)?.split_whitespace().nth(3)?.parse::<u32>().ok();
    let groups = field("Groups")?
        .split_whitespace()
        .map(|g| g.parse::<u32>().ok())
        .collect::<Option<Vec<_>>>()?;
    let cap_effective = u64::from_str_radix(field("CapEff")?, 16).ok()?;
    let umask = u32::from_str_radix(field("Umask")?, 8).ok()?;
    Some((
        Creds {
            fsuid: fs_id("Uid")?,
            fsgid: fs_id("Gid")?,
            groups,
            cap_effective,
            same_userns,
        },
        umask,
    ))
}
