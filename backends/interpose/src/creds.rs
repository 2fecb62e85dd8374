//! Acting as a target thread: a worker thread of the supervisor takes a
//! target's filesystem ids, supplementary groups and effective capabilities
//! around one file or socket operation, so the kernel checks that operation
//! exactly as it would check the target's own call.
//!
//! Only the calling worker thread changes: the raw `setfsuid`, `setfsgid`,
//! `setgroups` and `capset` syscalls act on the calling thread, unlike
//! glibc's wrappers, which apply them to every thread of the process. The
//! real and effective uid stay root, which only matters for checks that
//! use them rather than the filesystem ids: `access(2)` (never emulated),
//! and the peer credentials of sockets (unix sockets are never emulated).
//!
//! A target in another user namespace keeps its ids (the kernel shows
//! them in the supervisor's namespace) but gets no capabilities at all:
//! its capabilities are relative to its own namespace, and granting them in
//! the supervisor's would give it more than it has. Such a target can
//! still open what its ids and groups may open, but not, say, a file of
//! another uid of its namespace that its `CAP_DAC_OVERRIDE` would let it
//! open natively.

use std::io;

use crate::target::Creds;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two words.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The worker thread's own identity, to return to after each operation.
pub(crate) struct Own {
    groups: Vec<u32>,
    caps: [CapData; 2],
}

impl Own {
    /// Records the calling thread's identity. Call on the worker thread.
    pub(crate) fn current() -> io::Result<Own> {
        // SAFETY: getgroups with size 0 only returns the count.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut groups = vec![0u32; n as usize];
        // SAFETY: the buffer holds `n` gid_t, as told.
        let n = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        groups.truncate(n as usize);
        let mut caps = [CapData::default(); 2];
        let mut header = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        // SAFETY: capget writes two cap data structs for version 3, which
        // `caps` holds; both pointers live across the call.
        let ret = unsafe { libc::syscall(libc::SYS_capget, &mut header, caps.as_mut_ptr()) };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Own { groups, caps })
    }

    /// The capabilities this thread can take on or give back.
    fn permitted(&self) -> u64 {
        u64::from(self.caps[0].permitted) | (u64::from(self.caps[1].permitted) << 32)
    }

    /// Runs `op` with the identity of `target`, and returns to the worker's
    /// own identity afterwards (also if `op` panics). Skips the switch when
    /// the target's identity is the worker's own. Fails (without running
    /// `op`) if any step of the switch fails.
    pub(crate) fn act_as<R>(&self, target: &Creds, op: impl FnOnce() -> R) -> io::Result<R> {
        let caps = if target.same_userns {
            target.cap_effective & self.permitted()
        } else {
            0
        };
        let own_effective =
            u64::from(self.caps[0].effective) | (u64::from(self.caps[1].effective) << 32);
        if target.fsuid == 0
            && target.fsgid == 0
            && caps == own_effective
            && target.groups == self.groups
        {
            return Ok(op());
        }
        let guard = Switched { own: self };
        set_groups(&target.groups)?;
        set_fs_id(libc::SYS_setfsgid, target.fsgid)?;
        set_fs_id(libc::SYS_setfsuid, target.fsuid)?;
        self.set_effective(caps)?;
        let result = op();
        drop(guard);
        Ok(result)
    }

    /// Sets the effective capabilities, keeping permitted and inheritable.
    fn set_effective(&self, effective: u64) -> io::Result<()> {
        let mut data = self.caps;
        data[0].effective = effective as u32;
        data[1].effective = (effective >> 32) as u32;
        let mut header = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        // SAFETY: capset reads the header and two cap data structs, which
        // live across the call.
        let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Returns to the worker's own identity; panics if that fails, since a
    /// worker left with a target's identity must not go on.
    fn restore(&self) {
        let own_effective =
            u64::from(self.caps[0].effective) | (u64::from(self.caps[1].effective) << 32);
        let restored = self
            .set_effective(own_effective)
            .and_then(|()| set_fs_id(libc::SYS_setfsuid, 0))
            .and_then(|()| set_fs_id(libc::SYS_setfsgid, 0))
            .and_then(|()| set_groups(&self.groups));
        if let Err(e) = restored {
            panic!("supervisor worker could not take back its own identity: {e}");
        }
    }
}

/// Restores the worker's identity when dropped, also after a failed step
/// of the switch.
struct Switched<'a> {
    own: &'a Own,
}

impl Drop for Switched<'_> {
    fn drop(&mut self) {
        self.own.restore();
    }
}

/// Sets the calling thread's supplementary groups.
fn set_groups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: setgroups reads `len` gid_t from the pointer, which points at
    // the slice for the duration of the call.
    let ret = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the calling thread's fsuid or fsgid (`nr` is `SYS_setfsuid` or
/// `SYS_setfsgid`) and checks that it took: these syscalls report no
/// errors, only the previous value.
fn set_fs_id(nr: libc::c_long, id: u32) -> io::Result<()> {
    // SAFETY: setfsuid/setfsgid take an integer argument only.
    unsafe { libc::syscall(nr, id) };
    // An invalid id changes nothing and returns the current one.
    // SAFETY: as above.
    let now = unsafe { libc::syscall(nr, u32::MAX) };
    if now as u32 != id {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(())
}
