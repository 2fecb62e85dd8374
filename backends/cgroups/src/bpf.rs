//! cgroup v2 device programs: eBPF instructions, and loading and attaching
//! them with `bpf(2)`.
//!
//! cgroup v2 has no device controller; instead a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program attached to the cgroup (`BPF_CGROUP_DEVICE`) is asked about every
//! device access of its processes, and a 0 answer fails it with `EPERM`.
//! This works in any cgroup2 hierarchy, with or without controllers enabled.
//!
//! The program needs no kernel helper, so its license string only has to be
//! present: it is the project's own, `Apache-2.0`. Programs are attached with
//! `BPF_F_ALLOW_MULTI` under the name [`PROGRAM_NAME`]; attaching a new one
//! detaches the earlier ones of that name afterwards, so the cgroup is never
//! left without a program (for that instant both apply, which only denies
//! more). Programs attached by others are left alone.

use std::ffi::c_void;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::libc;

use crate::error::{Error, Result};

/// Access bits of `bpf_cgroup_dev_ctx.access_type` (upper 16 bits).
pub(crate) const ACC_MKNOD: u32 = 1;
/// Read access.
pub(crate) const ACC_READ: u32 = 2;
/// Write access.
pub(crate) const ACC_WRITE: u32 = 4;
/// Device type of `bpf_cgroup_dev_ctx.access_type` (lower 16 bits): block.
pub(crate) const DEV_BLOCK: u32 = 1;
/// Character device.
pub(crate) const DEV_CHAR: u32 = 2;

/// The name the programs of this crate are loaded under (at most 15
/// characters of `[A-Za-z0-9_.]`).
pub(crate) const PROGRAM_NAME: &str = "strata_devices";

/// The license string given to the kernel.
const LICENSE: &[u8] = b"Apache-2.0\0";

// Instruction classes, sizes, modes and operations.
const CLASS_LDX: u8 = 0x01;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const SIZE_W: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
const ALU_AND: u8 = 0x50;
const ALU_RSH: u8 = 0x70;
const ALU_MOV: u8 = 0xb0;
const JMP_JEQ: u8 = 0x10;
const JMP_JNE: u8 = 0x50;
const JMP_EXIT: u8 = 0x90;

/// One eBPF instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u8,
    pub(crate) dst: u8,
    pub(crate) src: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// `dst = *(u32 *)(src + off)`
    pub(crate) const fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(CLASS_LDX | SIZE_W | MODE_MEM, dst, src, off, 0)
    }

    /// `dst = (u32) imm`
    pub(crate) const fn mov32_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(CLASS_ALU | ALU_MOV | SRC_K, dst, 0, 0, imm)
    }

    /// `dst = (u32) src`
    pub(crate) const fn mov32_reg(dst: u8, src: u8) -> Insn {
        Insn::new(CLASS_ALU | ALU_MOV | SRC_X, dst, src, 0, 0)
    }

    /// `dst &= (u32) imm`
    pub(crate) const fn and32_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(CLASS_ALU | ALU_AND | SRC_K, dst, 0, 0, imm)
    }

    /// `dst >>= imm` (32-bit)
    pub(crate) const fn rsh32_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(CLASS_ALU | ALU_RSH | SRC_K, dst, 0, 0, imm)
    }

    /// `if dst != imm goto +off`
    pub(crate) const fn jne_imm(dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(CLASS_JMP | JMP_JNE | SRC_K, dst, 0, off, imm)
    }

    /// `if dst == imm goto +off`
    pub(crate) const fn jeq_imm(dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(CLASS_JMP | JMP_JEQ | SRC_K, dst, 0, off, imm)
    }

    /// `return r0`
    pub(crate) const fn exit() -> Insn {
        Insn::new(CLASS_JMP | JMP_EXIT, 0, 0, 0, 0)
    }

    /// The kernel's 8-byte encoding: opcode, registers (destination in the
    /// low nibble), then offset and immediate, little-endian.
    pub(crate) fn encode(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0] = self.code;
        out[1] = (self.dst & 0x0f) | (self.src << 4);
        out[2..4].copy_from_slice(&self.off.to_le_bytes());
        out[4..8].copy_from_slice(&self.imm.to_le_bytes());
        out
    }
}

impl fmt::Display for Insn {
    /// A short assembly form, such as `jne r2, 2, +5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, s, off, imm) = (self.dst, self.src, self.off, self.imm);
        match self.code {
            c if c == CLASS_LDX | SIZE_W | MODE_MEM => write!(f, "ldxw r{d}, [r{s}{off:+}]"),
            c if c == CLASS_ALU | ALU_MOV | SRC_K => write!(f, "mov32 r{d}, {imm}"),
            c if c == CLASS_ALU | ALU_MOV | SRC_X => write!(f, "mov32 r{d}, r{s}"),
            c if c == CLASS_ALU | ALU_AND | SRC_K => write!(f, "and32 r{d}, {imm:#x}"),
            c if c == CLASS_ALU | ALU_RSH | SRC_K => write!(f, "rsh32 r{d}, {imm}"),
            c if c == CLASS_JMP | JMP_JNE | SRC_K => write!(f, "jne r{d}, {imm}, {off:+}"),
            c if c == CLASS_JMP | JMP_JEQ | SRC_K => write!(f, "jeq r{d}, {imm}, {off:+}"),
            c if c == CLASS_JMP | JMP_EXIT => write!(f, "exit"),
            c => write!(f, "op {c:#04x} r{d}, r{s}, {off:+}, {imm}"),
        }
    }
}

/// The text form of a program, one instruction a line.
pub(crate) fn listing(insns: &[Insn]) -> String {
    insns.iter().map(|i| format!("{i}\n")).collect()
}

// bpf(2) commands, program and attach types, flags.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// Room left after each attribute block: the kernel zero-fills what a
/// caller leaves out, and a few commands write results back into fields
/// newer than the ones named here, which must land in memory of ours.
const ATTR_TAIL: usize = 128;

/// `union bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    tail: [u8; ATTR_TAIL],
}

/// `union bpf_attr` for `BPF_PROG_ATTACH` and `BPF_PROG_DETACH`.
#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    tail: [u8; ATTR_TAIL],
}

/// `union bpf_attr` for `BPF_PROG_QUERY`.
#[repr(C)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
    tail: [u8; ATTR_TAIL],
}

/// `union bpf_attr` for `BPF_PROG_GET_FD_BY_ID`.
#[repr(C)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
    tail: [u8; ATTR_TAIL],
}

/// `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
    tail: [u8; ATTR_TAIL],
}

/// The leading fields of `struct bpf_prog_info`, up to the name.
#[repr(C)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

/// An attribute block of one `bpf(2)` command.
///
/// # Safety
///
/// Implementors are `#[repr(C)]` structs, without implicit padding, laid out
/// as the kernel's `union bpf_attr` member for [`Attr::CMD`], and any
/// pointer they hold is valid for what the command does with it.
unsafe trait Attr {
    const CMD: libc::c_int;
}

// SAFETY: laid out as the BPF_PROG_LOAD member; `bpf` callers keep the
// instruction, license and log buffers alive across the call.
unsafe impl Attr for ProgLoadAttr {
    const CMD: libc::c_int = BPF_PROG_LOAD;
}
// SAFETY: laid out as the BPF_PROG_ATTACH member; holds no pointers.
unsafe impl Attr for AttachAttr {
    const CMD: libc::c_int = BPF_PROG_ATTACH;
}
// SAFETY: laid out as the BPF_PROG_QUERY member; `query` keeps the id
// buffer alive and its length in `prog_cnt`.
unsafe impl Attr for QueryAttr {
    const CMD: libc::c_int = BPF_PROG_QUERY;
}
// SAFETY: laid out as the BPF_PROG_GET_FD_BY_ID member; holds no pointers.
unsafe impl Attr for GetFdAttr {
    const CMD: libc::c_int = BPF_PROG_GET_FD_BY_ID;
}
// SAFETY: laid out as the BPF_OBJ_GET_INFO_BY_FD member; `prog_name` keeps
// the info buffer alive and its length in `info_len`.
unsafe impl Attr for InfoAttr {
    const CMD: libc::c_int = BPF_OBJ_GET_INFO_BY_FD;
}

/// Runs `bpf(cmd, attr, sizeof attr)` with `cmd` overridden when given
/// (detach shares the attach block).
fn bpf<A: Attr>(attr: &mut A, cmd: Option<libc::c_int>) -> io::Result<libc::c_long> {
    let size = libc::c_uint::try_from(std::mem::size_of::<A>()).unwrap_or(libc::c_uint::MAX);
    let ptr: *mut A = attr;
    // SAFETY: `ptr` is a live, exclusively borrowed attribute block of
    // `size` bytes laid out for the command (the `Attr` contract); the
    // kernel reads it and writes results only within it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd.unwrap_or(A::CMD),
            ptr.cast::<c_void>(),
            size,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`bpf`], for commands that return a new file descriptor.
fn bpf_fd<A: Attr>(attr: &mut A) -> io::Result<OwnedFd> {
    let fd = bpf(attr, None)?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: &impl AsRawFd) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

/// Loads `insns` as a device program named [`PROGRAM_NAME`]. When the
/// kernel rejects it, the verifier's log is returned with the error.
fn load(insns: &[Insn]) -> std::result::Result<OwnedFd, (io::Error, String)> {
    let code: Vec<[u8; 8]> = insns.iter().map(Insn::encode).collect();
    let mut name = [0u8; 16];
    name[..PROGRAM_NAME.len()].copy_from_slice(PROGRAM_NAME.as_bytes());
    let mut log = vec![0u8; 0];
    loop {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: u32::try_from(code.len()).unwrap_or(u32::MAX),
            insns: code.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: u32::try_from(log.len()).unwrap_or(0),
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            prog_ifindex: 0,
            expected_attach_type: BPF_CGROUP_DEVICE,
            tail: [0; ATTR_TAIL],
        };
        match bpf_fd(&mut attr) {
            Ok(fd) => return Ok(fd),
            // Rejected by the verifier: load again to hear why.
            Err(e)
                if log.is_empty()
                    && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EACCES)) =>
            {
                log = vec![0u8; 64 * 1024];
            }
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]).trim().to_owned();
                return Err((e, text));
            }
        }
    }
}

/// The ids of the device programs attached to the cgroup `dir`.
fn query(dir: &OwnedFd) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    loop {
        let mut attr = QueryAttr {
            target_fd: fd_u32(dir),
            attach_type: BPF_CGROUP_DEVICE,
            query_flags: 0,
            attach_flags: 0,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: u32::try_from(ids.len()).unwrap_or(0),
            pad: 0,
            tail: [0; ATTR_TAIL],
        };
        match bpf(&mut attr, None) {
            Ok(_) => {
                ids.truncate(usize::try_from(attr.prog_cnt).unwrap_or(0).min(ids.len()));
                return Ok(ids);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && ids.len() < 1 << 16 => {
                ids = vec![0u32; ids.len() * 4];
            }
            Err(e) => return Err(e),
        }
    }
}

/// A descriptor for program `id`, with its name.
fn open_program(id: u32) -> io::Result<(OwnedFd, String)> {
    let mut attr = GetFdAttr {
        prog_id: id,
        next_id: 0,
        open_flags: 0,
        tail: [0; ATTR_TAIL],
    };
    let fd = bpf_fd(&mut attr)?;
    let name = program_name(&fd)?;
    Ok((fd, name))
}

fn program_name(fd: &OwnedFd) -> io::Result<String> {
    let mut info = ProgInfo {
        prog_type: 0,
        id: 0,
        tag: [0; 8],
        jited_prog_len: 0,
        xlated_prog_len: 0,
        jited_prog_insns: 0,
        xlated_prog_insns: 0,
        load_time: 0,
        created_by_uid: 0,
        nr_map_ids: 0,
        map_ids: 0,
        name: [0; 16],
    };
    let ptr: *mut ProgInfo = &mut info;
    let mut attr = InfoAttr {
        bpf_fd: fd_u32(fd),
        info_len: u32::try_from(std::mem::size_of::<ProgInfo>()).unwrap_or(0),
        info: ptr as u64,
        tail: [0; ATTR_TAIL],
    };
    bpf(&mut attr, None)?;
    let end = info.name.iter().position(|&b| b == 0).unwrap_or(16);
    Ok(String::from_utf8_lossy(&info.name[..end]).into_owned())
}

fn attach_attr(dir: &OwnedFd, prog: &OwnedFd, flags: u32) -> AttachAttr {
    AttachAttr {
        target_fd: fd_u32(dir),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        replace_bpf_fd: 0,
        tail: [0; ATTR_TAIL],
    }
}

/// Loads `insns` and attaches the program to the cgroup directory `dir`,
/// then detaches the programs this crate attached there before.
pub(crate) fn attach_device_program(dir: &Path, insns: &[Insn]) -> Result<()> {
    let fail = |action: &'static str, source: io::Error, log: String| Error::DeviceProgram {
        path: dir.to_owned(),
        action,
        source,
        log,
    };
    let dir_fd: OwnedFd = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::Read {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    log::debug!(
        "cgroup {}: device program:\n{}",
        dir.display(),
        listing(insns)
    );
    let prog = load(insns).map_err(|(e, log)| fail("the kernel refused to load", e, log))?;
    let before = query(&dir_fd).map_err(|e| {
        fail(
            "could not be installed (listing the programs attached to the cgroup failed)",
            e,
            String::new(),
        )
    })?;
    let mut attr = attach_attr(&dir_fd, &prog, BPF_F_ALLOW_MULTI);
    bpf(&mut attr, None)
        .map_err(|e| fail("could not be attached to the cgroup", e, String::new()))?;
    // Everything listed before the attach is older than the new program.
    for id in before {
        let (old, name) = match open_program(id) {
            Ok(found) => found,
            // Detached meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => {
                return Err(fail(
                    "replaces the earlier one, which could not be opened",
                    e,
                    String::new(),
                ))
            }
        };
        if name != PROGRAM_NAME {
            continue;
        }
        let mut attr = attach_attr(&dir_fd, &old, 0);
        match bpf(&mut attr, Some(BPF_PROG_DETACH)) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                return Err(fail(
                    "replaces the earlier one, which could not be detached",
                    e,
                    String::new(),
                ))
            }
        }
    }
    Ok(())
}

/// The names of the device programs attached to the cgroup `dir`, in the
/// order they run.
#[cfg(test)]
pub(crate) fn attached_names(dir: &Path) -> io::Result<Vec<String>> {
    let dir_fd: OwnedFd = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    query(&dir_fd)?
        .into_iter()
        .map(|id| open_program(id).map(|(_, name)| name))
        .collect()
}
