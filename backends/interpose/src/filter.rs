//! The seccomp filter of an interpose container, as an OCI `linux.seccomp`
//! object that `strata_seccomp::Filter` compiles and loads.

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};

use crate::calls::{Call, DENIED_BY_DEFAULT};
use crate::{Policy, PolicyError};

/// Index of `sendto`'s destination address argument.
const SENDTO_ADDR_ARG: usize = 4;

/// The filter for `policy`: everything allowed by default; every mediated
/// syscall sent to the supervisor (`SCMP_ACT_NOTIFY`); the syscalls of
/// [`DENIED_BY_DEFAULT`] that the policy does not re-allow refused in the
/// kernel with `EPERM`, without a round trip.
///
/// `sendto` is mediated only when it carries a destination address (its
/// fifth argument is not NULL), so that `send` on a connected socket stays
/// native; `newfstatat` and `statx` only without `AT_EMPTY_PATH`, so that
/// `fstat` stays native (see `condition`). `unshare` and `setns`, when re-allowed, are mediated rather than
/// allowed: the supervisor forgets what it cached about the caller's root
/// and credentials before letting them run.
///
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` is set: a received call waits
/// for its answer, interrupted only by a fatal signal, so a signal cannot
/// cancel a call the supervisor is performing (a send would otherwise be
/// made twice when the interrupted call restarts). `strata_seccomp` loads
/// the filter by hand where the linked libseccomp cannot set the flag. A
/// signal still cancels a call not yet received; the handlers are written
/// for that.
///
/// The object has no `listenerPath`: the runtime takes the listener
/// itself, so it compiles the object with
/// `strata_seccomp::Filter::compile_for_runtime`.
///
/// Syscalls the linked libseccomp does not know by name are left out of the
/// compiled filter and run natively (Debian 12's libseccomp knows all the
/// mediated and denied ones, but not, say, `listmount`); the masking
/// mounts behind hidden and read-only paths hold for them. Only the native
/// architecture is in the filter: libseccomp kills a thread that makes a
/// syscall of another ABI (i386, x32), which would otherwise match none of
/// the rules.
pub fn filter(policy: &Policy) -> Result<LinuxSeccomp, PolicyError> {
    policy.check()?;
    if let Some(name) = policy
        .allow_syscalls
        .iter()
        .find(|n| !DENIED_BY_DEFAULT.contains(&n.as_str()))
    {
        return Err(PolicyError::NotDenied(name.clone()));
    }
    let allowed = |name: &str| policy.allow_syscalls.iter().any(|a| a == name);

    let notified: Vec<String> = Call::ALL
        .iter()
        .filter(|c| condition(**c).is_none())
        .filter(|c| !c.only_when_allowed() || allowed(c.name()))
        .filter(|c| **c != Call::Getdents64 || !policy.hidden.is_empty())
        .map(|c| c.name().to_owned())
        .collect();
    let denied: Vec<String> = DENIED_BY_DEFAULT
        .iter()
        .filter(|n| !allowed(n))
        .map(|n| (*n).to_owned())
        .collect();

    let mut notify = LinuxSyscall::default();
    notify
        .set_names(notified)
        .set_action(LinuxSeccompAction::ScmpActNotify);
    let mut syscalls = vec![notify];
    for &call in Call::ALL {
        if let Some(arg) = condition(call) {
            let mut rule = LinuxSyscall::default();
            rule.set_names(vec![call.name().to_owned()])
                .set_action(LinuxSeccompAction::ScmpActNotify)
                .set_args(Some(vec![arg]));
            syscalls.push(rule);
        }
    }
    if !denied.is_empty() {
        let mut deny = LinuxSyscall::default();
        deny.set_names(denied)
            .set_action(LinuxSeccompAction::ScmpActErrno)
            .set_errno_ret(Some(libc::EPERM as u32));
        syscalls.push(deny);
    }

    let mut seccomp = LinuxSeccomp::default();
    seccomp
        .set_default_action(LinuxSeccompAction::ScmpActAllow)
        .set_syscalls(Some(syscalls));
    seccomp.set_flags(Some(vec![
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
    ]));
    Ok(seccomp)
}

/// The argument condition under which `call` is mediated, for the calls
/// mediated only sometimes:
///
/// * `sendto` with a destination address (argument 4 not NULL).
/// * `newfstatat` and `statx` without `AT_EMPTY_PATH` (in argument 3 and 2):
///   with it they are glibc's `fstat` of an fd the caller holds, among the
///   most frequent syscalls there are. A caller that passes `AT_EMPTY_PATH`
///   with a non-empty path stats that path natively (the kernel ignores the
///   flag then); below a hidden path it finds the runtime's masking mount
///   (a `/dev/null` or an empty directory), never the hidden file.
fn condition(call: Call) -> Option<LinuxSeccompArg> {
    let (index, value, value_two, op) = match call {
        Call::Sendto => (SENDTO_ADDR_ARG, 0, None, LinuxSeccompOperator::ScmpCmpNe),
        Call::Newfstatat | Call::Statx => (
            if call == Call::Statx { 2 } else { 3 },
            libc::AT_EMPTY_PATH as u64,
            Some(0u64),
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        ),
        _ => return None,
    };
    let arg = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    let arg = match value_two {
        Some(v) => arg.value_two(v),
        None => arg,
    };
    Some(
        arg.build()
            .expect("every field of the argument rule is set"),
    )
}
