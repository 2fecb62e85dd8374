//! Compiling `linux.seccomp` into a libseccomp filter, and loading it.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use crate::SeccompError;

/// JSON path of the profile in `config.json`, the prefix of every error path.
const ROOT: &str = "linux.seccomp";

/// Largest `errnoRet`: the kernel keeps 16 bits of data with an action.
const MAX_RET_DATA: u32 = 0xffff;

/// Largest argument index: system calls take at most six arguments.
const MAX_ARG_INDEX: usize = 5;

/// Set once a listener fd has been taken from libseccomp in this process.
///
/// libseccomp remembers the listener of the first filter it loads in a
/// process and, while it does, neither asks the kernel for another nor
/// forgets the old one: a second notifying filter would hand out the first
/// fd again, which [`Filter::load`] has already given away as an
/// [`OwnedFd`].
static LISTENER_TAKEN: AtomicBool = AtomicBool::new(false);

/// A filter compiled from a spec, ready to load into the calling process.
///
/// Compiling needs no privilege and changes nothing in the process, so it is
/// best done where errors are easy to report (before forking the container's
/// process); [`load`](Filter::load) is then the only step left in the
/// container's process.
pub struct Filter {
    ctx: ScmpFilterContext,
    listener: bool,
    /// Set when the profile asks for `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`
    /// and the linked libseccomp (before 2.6) cannot set it: the filter is
    /// then exported and loaded with `seccomp(2)` directly, with these
    /// kernel flags.
    by_hand: Option<u32>,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("wants_listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// One `syscalls[]` entry, checked and translated.
struct Rule<'a> {
    path: String,
    names: &'a [String],
    action: ScmpAction,
    /// The comparisons, as alternatives: the rule matches when all the
    /// comparisons of one group hold. A single empty group matches always.
    groups: Vec<Vec<ScmpArgCompare>>,
}

impl Filter {
    /// Compiles `seccomp` for the architectures it lists plus the native one.
    ///
    /// Syscall names that libseccomp does not know are skipped (profiles
    /// list syscalls of newer kernels and of other architectures), and so
    /// are rules whose action is the default action. Several comparisons on
    /// the same argument make alternatives (one kernel rule each, as
    /// libseccomp cannot test an argument twice in a rule); comparisons on
    /// distinct arguments must all hold. When rules overlap, libseccomp's
    /// semantics decide.
    ///
    /// Errors name the offending field by its JSON path.
    pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter, SeccompError> {
        Self::build(seccomp, true)
    }

    /// Like [`compile`](Filter::compile), for a filter whose notification
    /// listener the runtime takes itself (an interposer's) rather than
    /// sending it to the agent at `listenerPath`, which may then be absent.
    pub fn compile_for_runtime(seccomp: &LinuxSeccomp) -> Result<Filter, SeccompError> {
        Self::build(seccomp, false)
    }

    fn build(seccomp: &LinuxSeccomp, agent_listener: bool) -> Result<Filter, SeccompError> {
        let default = default_action(seccomp)?;
        if seccomp.listener_metadata().is_some() && seccomp.listener_path().is_none() {
            return Err(SeccompError::invalid(
                format!("{ROOT}.listenerMetadata"),
                format!("must not be set without {ROOT}.listenerPath"),
            ));
        }
        let rules = seccomp
            .syscalls()
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, rule)| check_rule(rule, &format!("{ROOT}.syscalls[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if agent_listener && seccomp.listener_path().is_none() {
            if let Some(rule) = rules.iter().find(|r| r.action == ScmpAction::Notify) {
                return Err(SeccompError::invalid(
                    format!("{ROOT}.listenerPath"),
                    format!("must be set: {}.action is SCMP_ACT_NOTIFY", rule.path),
                ));
            }
        }

        let mut ctx = ScmpFilterContext::new(default)
            .map_err(SeccompError::library("creating the seccomp filter"))?;
        // no_new_privs is process.noNewPrivileges's business; libseccomp
        // would otherwise set it when loading.
        ctx.set_ctl_nnp(false).map_err(SeccompError::library(
            "clearing the filter's no_new_privs attribute",
        ))?;
        add_architectures(&mut ctx, seccomp)?;
        let by_hand = set_flags(&mut ctx, seccomp)?;
        let mut listener = false;
        for rule in &rules {
            listener |= add_rule(&mut ctx, default, rule)?;
        }
        Ok(Filter {
            ctx,
            listener,
            by_hand,
        })
    }

    /// Whether a rule with `SCMP_ACT_NOTIFY` made it into the filter: then
    /// [`load`](Filter::load) returns the notification listener.
    pub fn wants_listener(&self) -> bool {
        self.listener
    }

    /// libseccomp's human-readable rendering of the filter ("pseudo filter
    /// code"), for diagnostics.
    pub fn pseudo_code(&self) -> Result<String, SeccompError> {
        let fd = nix::sys::memfd::memfd_create(
            c"strata-seccomp-pfc",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )
        .map_err(|e| SeccompError::io("creating a memfd for the pseudo code")(e.into()))?;
        self.ctx
            .export_pfc(&fd)
            .map_err(SeccompError::library("exporting the pseudo code"))?;
        let mut file = File::from(fd);
        let mut text = String::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text))
            .map_err(SeccompError::io("reading the pseudo code"))?;
        Ok(text)
    }

    /// Loads the filter into the calling thread, and into every thread of
    /// the process if the profile has `SECCOMP_FILTER_FLAG_TSYNC`; without
    /// that flag the caller must be single-threaded for the whole process to
    /// be filtered. Children forked and programs executed afterwards inherit
    /// the filter.
    ///
    /// The kernel accepts a filter only from a process that has
    /// no_new_privs set or `CAP_SYS_ADMIN` in its user namespace; this call
    /// does not set no_new_privs.
    ///
    /// Returns the notification listener (close-on-exec) when
    /// [`wants_listener`](Filter::wants_listener): then this call must be
    /// the only one in the process to load a notifying filter.
    pub fn load(self) -> Result<Option<OwnedFd>, SeccompError> {
        if self.listener && LISTENER_TAKEN.load(Ordering::SeqCst) {
            return Err(SeccompError::Unsupported {
                path: ROOT.to_owned(),
                reason: "a process can load only one filter with SCMP_ACT_NOTIFY rules".to_owned(),
            });
        }
        if let Some(flags) = self.by_hand {
            let listener = self.load_by_hand(flags)?;
            if listener.is_some() {
                LISTENER_TAKEN.store(true, Ordering::SeqCst);
            }
            return Ok(listener);
        }
        self.ctx
            .load()
            .map_err(SeccompError::library("loading the seccomp filter"))?;
        if !self.listener {
            return Ok(None);
        }
        let raw = self
            .ctx
            .get_notify_fd()
            .map_err(SeccompError::library("getting the notification listener"))?;
        LISTENER_TAKEN.store(true, Ordering::SeqCst);
        // SAFETY: `raw` is the listener fd the kernel returned when the
        // filter above was loaded (get_notify_fd fails rather than return a
        // negative number). libseccomp only records it and closes it solely
        // when reset without a filter, which this crate never does, and
        // LISTENER_TAKEN ensures no other Filter hands it out again: the
        // returned OwnedFd is its only owner.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) }))
    }
}

impl Filter {
    /// Loads the exported program with `seccomp(SECCOMP_SET_MODE_FILTER)`
    /// and `flags` (plus `NEW_LISTENER` when the filter notifies), for the
    /// flags the linked libseccomp cannot set.
    fn load_by_hand(&self, mut flags: u32) -> Result<Option<OwnedFd>, SeccompError> {
        // SAFETY: memfd_create takes a NUL-terminated name and flags.
        let raw = unsafe { libc::memfd_create(c"strata-seccomp-bpf".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(
                SeccompError::io("creating a buffer for the filter program")(
                    std::io::Error::last_os_error(),
                ),
            );
        }
        // SAFETY: memfd_create returned a new descriptor that nothing else owns.
        let mut file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        self.ctx
            .export_bpf(&file)
            .map_err(SeccompError::library("exporting the seccomp filter"))?;
        let mut program = Vec::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut program))
            .map_err(SeccompError::io("reading the exported filter"))?;
        let instructions: Vec<libc::sock_filter> = program
            .chunks_exact(std::mem::size_of::<libc::sock_filter>())
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let fprog = libc::sock_fprog {
            len: instructions.len() as u16,
            filter: instructions.as_ptr() as *mut libc::sock_filter,
        };
        if self.listener {
            flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
            if flags & SECCOMP_FILTER_FLAG_TSYNC != 0 {
                // A listener and thread sync need the kernel to report a
                // failed sync as ESRCH instead of a thread id.
                flags |= SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
            }
        } else {
            // The kernel takes the flag only with a listener; without one
            // no call ever waits for an answer.
            flags &= !SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        }
        // SAFETY: seccomp reads the program `fprog` points at, which lives
        // (with `instructions`) across the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                flags,
                &fprog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            return Err(SeccompError::io("loading the seccomp filter")(
                std::io::Error::last_os_error(),
            ));
        }
        if !self.listener {
            return Ok(None);
        }
        // SAFETY: with NEW_LISTENER, seccomp returned a new close-on-exec
        // listener descriptor that nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as i32) }))
    }
}

/// `SECCOMP_SET_MODE_FILTER`, the operation of `seccomp(2)` that loads a filter.
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
/// `SECCOMP_FILTER_FLAG_TSYNC`.
const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1 << 0;
/// `SECCOMP_FILTER_FLAG_LOG`.
const SECCOMP_FILTER_FLAG_LOG: u32 = 1 << 1;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`.
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 1 << 2;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;
/// `SECCOMP_FILTER_FLAG_TSYNC_ESRCH`.
const SECCOMP_FILTER_FLAG_TSYNC_ESRCH: u32 = 1 << 4;
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (Linux 5.19).
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// Translates `defaultAction` with `defaultErrnoRet`.
fn default_action(seccomp: &LinuxSeccomp) -> Result<ScmpAction, SeccompError> {
    let action = seccomp.default_action();
    if action == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::invalid(
            format!("{ROOT}.defaultAction"),
            "SCMP_ACT_NOTIFY cannot be the default action",
        ));
    }
    translate_action(
        action,
        seccomp.default_errno_ret(),
        &format!("{ROOT}.defaultErrnoRet"),
    )
}

/// Translates an action; `errno_path` is where `errno_ret` came from.
fn translate_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    errno_path: &str,
) -> Result<ScmpAction, SeccompError> {
    use LinuxSeccompAction as A;
    let data = || -> Result<u16, SeccompError> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(v) if v <= MAX_RET_DATA => Ok(v as u16),
            Some(v) => Err(SeccompError::invalid(
                errno_path,
                format!("{v} is out of range 0..={MAX_RET_DATA}"),
            )),
        }
    };
    let translated = match action {
        A::ScmpActErrno => return Ok(ScmpAction::Errno(i32::from(data()?))),
        A::ScmpActTrace => return Ok(ScmpAction::Trace(data()?)),
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActNotify => ScmpAction::Notify,
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
    };
    match errno_ret {
        None => Ok(translated),
        Some(_) => Err(SeccompError::invalid(
            errno_path,
            format!("{action} takes no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)"),
        )),
    }
}

/// Checks and translates one `syscalls[]` entry found at `path`.
fn check_rule<'a>(rule: &'a LinuxSyscall, path: &str) -> Result<Rule<'a>, SeccompError> {
    if rule.names().is_empty() {
        return Err(SeccompError::invalid(
            format!("{path}.names"),
            "must name at least one syscall",
        ));
    }
    let action = translate_action(rule.action(), rule.errno_ret(), &format!("{path}.errnoRet"))?;
    let args = rule.args().as_deref().unwrap_or_default();
    let compares = args
        .iter()
        .enumerate()
        .map(|(k, arg)| translate_arg(arg, &format!("{path}.args[{k}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut indices = HashSet::new();
    let groups = if args.iter().all(|arg| indices.insert(arg.index())) {
        vec![compares]
    } else {
        compares.into_iter().map(|c| vec![c]).collect()
    };
    Ok(Rule {
        path: path.to_owned(),
        names: rule.names(),
        action,
        groups,
    })
}

/// Translates one `args[]` entry found at `path`.
fn translate_arg(arg: &LinuxSeccompArg, path: &str) -> Result<ScmpArgCompare, SeccompError> {
    use LinuxSeccompOperator as O;
    let index = arg.index();
    if index > MAX_ARG_INDEX {
        return Err(SeccompError::invalid(
            format!("{path}.index"),
            format!("{index} is out of range 0..={MAX_ARG_INDEX}"),
        ));
    }
    let value = arg.value();
    let (op, datum) = match arg.op() {
        O::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        O::ScmpCmpLt => (ScmpCompareOp::Less, value),
        O::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        O::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        O::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        O::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // `value` is the mask, `valueTwo` what the masked argument must equal.
        O::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(value),
            arg.value_two().unwrap_or(0),
        ),
    };
    // The index is at most MAX_ARG_INDEX, so it fits.
    Ok(ScmpArgCompare::new(index as u32, op, datum))
}

/// Adds the listed architectures to the filter, which has the native one.
fn add_architectures(
    ctx: &mut ScmpFilterContext,
    seccomp: &LinuxSeccomp,
) -> Result<(), SeccompError> {
    for (i, &arch) in seccomp.architectures().iter().flatten().enumerate() {
        let scmp = translate_arch(arch);
        ctx.add_arch(scmp).map_err(SeccompError::library(format!(
            "{ROOT}.architectures[{i}]: adding {arch}"
        )))?;
    }
    Ok(())
}

fn translate_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    }
}

/// Sets the filter attributes behind `flags`. Returns the kernel flags to
/// load the filter with by hand when the linked libseccomp cannot set
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (it can from 2.6 on).
fn set_flags(
    ctx: &mut ScmpFilterContext,
    seccomp: &LinuxSeccomp,
) -> Result<Option<u32>, SeccompError> {
    use LinuxSeccompFilterFlag as F;
    let flags = seccomp.flags().clone().unwrap_or_default();
    let by_hand = flags.contains(&F::SeccompFilterFlagWaitKillableRecv)
        && !libseccomp::check_version(libseccomp::ScmpVersion::from((2, 6, 0))).unwrap_or(false);
    if by_hand {
        let kernel = flags.iter().fold(0, |bits, flag| {
            bits | match flag {
                F::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
                F::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
                F::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                F::SeccompFilterFlagWaitKillableRecv => SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            }
        });
        return Ok(Some(kernel));
    }
    for (i, &flag) in flags.iter().enumerate() {
        let set = match flag {
            F::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
            F::SeccompFilterFlagLog => ctx.set_ctl_log(true),
            F::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
            F::SeccompFilterFlagWaitKillableRecv => ctx.set_ctl_waitkill(true),
        };
        set.map_err(|e| SeccompError::Unsupported {
            path: format!("{ROOT}.flags[{i}]"),
            reason: format!("{flag} is not supported here: {e}"),
        })?;
    }
    Ok(None)
}

/// Adds `rule` to the filter; returns whether it added a notifying rule.
fn add_rule(
    ctx: &mut ScmpFilterContext,
    default: ScmpAction,
    rule: &Rule<'_>,
) -> Result<bool, SeccompError> {
    if rule.action == default {
        log::debug!(
            "{}: skipped, its action is the default action {:?}",
            rule.path,
            default
        );
        return Ok(false);
    }
    let mut added = false;
    for (j, name) in rule.names.iter().enumerate() {
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            log::debug!(
                "{}.names[{j}]: skipped {name:?}, unknown to libseccomp",
                rule.path
            );
            continue;
        };
        for group in &rule.groups {
            let result = if group.is_empty() {
                ctx.add_rule(rule.action, syscall)
            } else {
                ctx.add_rule_conditional(rule.action, syscall, group)
            };
            result.map_err(SeccompError::library(format!(
                "{}.names[{j}]: adding a {:?} rule for {name}",
                rule.path, rule.action
            )))?;
        }
        added = true;
    }
    Ok(added && rule.action == ScmpAction::Notify)
}
