//! Reading and writing a target's memory with `process_vm_readv`/`writev`.
//!
//! Reads go page by page: a string may end just before an unmapped page, and
//! a read that crossed into it would fail as a whole.

use std::io;

/// The longest path the kernel accepts, terminator included.
pub(crate) const PATH_MAX: usize = libc::PATH_MAX as usize;

/// The page size assumed for splitting reads; a smaller real page size
/// only makes reads fail at an unmapped page boundary the kernel would have
/// faulted on too.
const PAGE: usize = 4096;

/// Copies `buf.len()` bytes at `addr` in thread `tid`'s address space;
/// `EFAULT` if any of them is unmapped.
pub(crate) fn read(tid: i32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let at = addr.wrapping_add(done as u64);
        let chunk = (PAGE - (at as usize % PAGE)).min(buf.len() - done);
        let n = transfer(tid, at, &mut buf[done..done + chunk], false)?;
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        done += n;
    }
    Ok(())
}

/// Reads the NUL-terminated string at `addr`: at most `max` bytes before the
/// terminator (`ENAMETOOLONG` beyond), `EFAULT` for a NULL pointer or an
/// unmapped byte before the terminator.
pub(crate) fn read_cstring(tid: i32, addr: u64, max: usize) -> io::Result<Vec<u8>> {
    if addr == 0 {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    let mut out = Vec::new();
    let mut at = addr;
    loop {
        // The first chunk is short: most paths are.
        let room = if out.is_empty() { 256 } else { PAGE };
        let chunk = (PAGE - (at as usize % PAGE)).min(room);
        let start = out.len();
        out.resize(start + chunk, 0);
        let n = transfer(tid, at, &mut out[start..], false)?;
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        out.truncate(start + n);
        if let Some(end) = out[start..].iter().position(|&b| b == 0) {
            out.truncate(start + end);
            return Ok(out);
        }
        if out.len() > max {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        at = at.wrapping_add(n as u64);
    }
}

/// Writes `data` at `addr` in thread `tid`'s address space.
pub(crate) fn write(tid: i32, addr: u64, data: &[u8]) -> io::Result<()> {
    let mut copy = data.to_vec();
    let mut done = 0;
    while done < copy.len() {
        let at = addr.wrapping_add(done as u64);
        let chunk = (PAGE - (at as usize % PAGE)).min(copy.len() - done);
        let n = transfer(tid, at, &mut copy[done..done + chunk], true)?;
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        done += n;
    }
    Ok(())
}

/// Writes a plain-data value at `addr`.
pub(crate) fn write_value<T: Copy>(tid: i32, addr: u64, value: &T) -> io::Result<()> {
    // SAFETY: the handlers only pass kernel ABI structs (plain integers
    // and arrays, zeroed before the kernel filled them in), whose bytes may
    // all be read; the slice covers exactly `value`.
    let bytes = unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    };
    write(tid, addr, bytes)
}

/// One `process_vm_readv` (or `writev`) of `buf` at `addr`; `EFAULT` when
/// nothing at `addr` is mapped.
fn transfer(tid: i32, addr: u64, buf: &mut [u8], write: bool) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let n = if write {
        // SAFETY: the local iovec covers `buf`, which lives across the
        // call; the remote one is only dereferenced by the kernel, in the
        // target's address space.
        unsafe { libc::process_vm_writev(tid, &local, 1, &remote, 1, 0) }
    } else {
        // SAFETY: as above; the kernel writes at most buf.len() bytes into
        // `buf`.
        unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) }
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
