//! The container's view of the system: the virtual `/proc` and `/sys`
//! files, `sysinfo`, `sched_getaffinity` and `uname`.

use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::handlers::{Ctx, Reply};
use crate::memory;
use crate::notify::Answer;

/// Renders a virtual file into a sealed memfd.
pub(crate) type Render = fn(&Ctx<'_>) -> io::Result<OwnedFd>;

/// The renderer of `path`, if the supervisor answers opens of it itself.
pub(crate) fn virtual_file(path: &Path) -> Option<Render> {
    let render: Render = match path.to_str()? {
        "/proc/meminfo" => |ctx| {
            let host = std::fs::read_to_string("/proc/meminfo")?;
            sealed(&ctx.shared.view.meminfo(&host))
        },
        "/proc/cpuinfo" => |ctx| {
            let host = std::fs::read_to_string("/proc/cpuinfo")?;
            sealed(&ctx.shared.view.cpuinfo(&host, cpus(ctx)?))
        },
        "/proc/stat" => |ctx| {
            let host = std::fs::read_to_string("/proc/stat")?;
            sealed(&ctx.shared.view.stat(&host, cpus(ctx)?))
        },
        "/proc/uptime" => |ctx| sealed(&ctx.shared.view.uptime_file()),
        "/sys/devices/system/cpu/online" => |ctx| sealed(&ctx.shared.view.online(cpus(ctx)?)),
        _ => return None,
    };
    Some(render)
}

/// `text` in a memfd, sealed against any change and positioned at its
/// start.
fn sealed(text: &str) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create reads the NUL-terminated name, a literal.
    let fd = unsafe {
        libc::memfd_create(
            c"strata-view".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(text.as_bytes())?;
    file.seek(SeekFrom::Start(0))?;
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an integer argument only.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file.into())
}

/// The CPUs the caller may run on, as the host sees them.
fn host_cpus(tid: i32) -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most the given size into `set`.
    let ret =
        unsafe { libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads bit `i` of the set, within CPU_SETSIZE.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect())
}

/// How many CPUs the caller has in the view.
fn cpus(ctx: &Ctx<'_>) -> io::Result<usize> {
    Ok(ctx.shared.view.cpus(host_cpus(ctx.tid())?.len()))
}

/// `sched_getaffinity(0, size, mask)`: the first of the caller's CPUs, as
/// many as the view gives it. Other pids, and containers without a CPU
/// limit, get the kernel's answer.
pub(crate) fn sched_getaffinity(ctx: &Ctx<'_>) -> Reply {
    if ctx.int_arg(0) != 0 || !ctx.shared.view.limits_cpus() {
        return Reply::Continue;
    }
    let size = ctx.arg(1) as usize;
    let word = std::mem::size_of::<libc::c_ulong>();
    let host = match host_cpus(ctx.tid()) {
        Ok(host) => host,
        Err(e) => return Answer::Error(e.raw_os_error().unwrap_or(libc::EINVAL)).into(),
    };
    // The kernel's rules: room for every possible CPU, in whole words.
    let needed = libc::CPU_SETSIZE as usize / 8;
    let possible = host.last().map_or(1, |&c| c + 1).div_ceil(8 * word) * word;
    if size < possible || !size.is_multiple_of(word) {
        return Answer::Error(libc::EINVAL).into();
    }
    let len = size.min(needed);
    let mut mask = vec![0u8; len];
    for &cpu in host.iter().take(ctx.shared.view.cpus(host.len())) {
        if cpu / 8 < len {
            mask[cpu / 8] |= 1 << (cpu % 8);
        }
    }
    if !ctx.still_pending() {
        return Reply::Gone;
    }
    match memory::write(ctx.tid(), ctx.arg(2), &mask) {
        Ok(()) => Answer::Value(len as i64).into(),
        Err(_) => Answer::Error(libc::EFAULT).into(),
    }
}

/// `sysinfo(info)`: the host's answer with the container's memory, uptime
/// and thread count.
pub(crate) fn sysinfo(ctx: &Ctx<'_>) -> Reply {
    // SAFETY: an all-zero sysinfo is a valid value of the plain struct.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: sysinfo writes one struct sysinfo to the pointer.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return Answer::Error(libc::EFAULT).into();
    }
    let view = &ctx.shared.view;
    info.uptime = view.uptime().as_secs() as libc::c_long;
    if let Some(mem) = view.memory() {
        info.mem_unit = 1;
        info.totalram = mem.total as libc::c_ulong;
        info.freeram = mem.free as libc::c_ulong;
        info.bufferram = 0;
        info.sharedram = 0;
        info.totalswap = 0;
        info.freeswap = 0;
        info.totalhigh = 0;
        info.freehigh = 0;
    }
    if let Some(threads) = view.memory_cgroup.as_deref().and_then(count_threads) {
        info.procs = threads.min(u64::from(u16::MAX)) as u16;
    }
    if !ctx.still_pending() {
        return Reply::Gone;
    }
    match memory::write_value(ctx.tid(), ctx.arg(0), &info) {
        Ok(()) => Answer::Value(0).into(),
        Err(_) => Answer::Error(libc::EFAULT).into(),
    }
}

/// The number of threads in the cgroup at `dir` (v2 `cgroup.threads`, v1
/// `tasks`).
fn count_threads(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("cgroup.threads"))
        .or_else(|_| std::fs::read_to_string(dir.join("tasks")))
        .ok()?;
    Some(text.lines().count() as u64)
}

/// `uname(buf)`: the caller's UTS namespace's names, with the policy's
/// kernel release if it sets one. The worker joins the caller's UTS
/// namespace for the read and returns to its own.
pub(crate) fn uname(ctx: &Ctx<'_>) -> Reply {
    let mut uts = match uts_of(ctx.tid()) {
        Ok(uts) => uts,
        Err(e) => {
            log::debug!("uname for thread {}: {e}", ctx.tid());
            return Reply::Continue;
        }
    };
    if let Some(release) = &ctx.shared.policy.kernel_release {
        uts.release = [0; 65];
        for (dst, src) in uts.release.iter_mut().zip(release.bytes().take(64)) {
            *dst = src as libc::c_char;
        }
    }
    if !ctx.still_pending() {
        return Reply::Gone;
    }
    match memory::write_value(ctx.tid(), ctx.arg(0), &uts) {
        Ok(()) => Answer::Value(0).into(),
        Err(_) => Answer::Error(libc::EFAULT).into(),
    }
}

/// `uname` as seen from thread `tid`'s UTS namespace.
fn uts_of(tid: i32) -> io::Result<libc::utsname> {
    // setns wants an fd opened for reading, not O_PATH.
    let theirs = OwnedFd::from(std::fs::File::open(format!("/proc/{tid}/ns/uts"))?);
    let ours = OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/uts")?);
    set_uts(&theirs)?;
    // SAFETY: an all-zero utsname is a valid value of the plain struct.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes one utsname to the pointer.
    let ret = unsafe { libc::uname(&mut uts) };
    let err = io::Error::last_os_error();
    if let Err(e) = set_uts(&ours) {
        panic!("supervisor worker could not return to its UTS namespace: {e}");
    }
    if ret != 0 {
        return Err(err);
    }
    Ok(uts)
}

/// Moves the calling thread into the UTS namespace `ns`.
fn set_uts(ns: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns takes an fd and an integer; it only changes the calling
    // thread's UTS namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUTS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
