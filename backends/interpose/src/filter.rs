//! The seccomp filter of an interpose container, as an OCI `linux.seccomp`
//! object that `strata_seccomp::Filter` compiles and loads.

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
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
/// native. `unshare` and `setns`, when re-allowed, are mediated rather than
/// allowed: the supervisor forgets what it cached about the caller's root
/// and credentials before letting them run.
///
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` is set when the libseccomp
/// in use can set it (2.6 and later): a received call then waits for its
/// answer, interrupted only by a fatal signal. Older libraries cannot, and
/// a signal then cancels a call the supervisor is handling; the handlers
/// are written for that either way.
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
        .filter(|c| **c != Call::Sendto)
        .filter(|c| !c.only_when_allowed() || allowed(c.name()))
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
    let mut sendto = LinuxSyscall::default();
    let has_addr = LinuxSeccompArgBuilder::default()
        .index(SENDTO_ADDR_ARG)
        .value(0u64)
        .op(LinuxSeccompOperator::ScmpCmpNe)
        .build()
        .expect("every field of the argument rule is set");
    sendto
        .set_names(vec![Call::Sendto.name().to_owned()])
        .set_action(LinuxSeccompAction::ScmpActNotify)
        .set_args(Some(vec![has_addr]));
    let mut syscalls = vec![notify, sendto];
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
    if wait_killable_supported() {
        seccomp.set_flags(Some(vec![
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
        ]));
    }
    Ok(seccomp)
}

/// Whether the linked libseccomp can set
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (it can from 2.6 on).
fn wait_killable_supported() -> bool {
    libseccomp::check_version(libseccomp::ScmpVersion::from((2, 6, 0))).unwrap_or(false)
}
