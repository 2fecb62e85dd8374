//! Per-container kernel settings: sysctls, the OOM score and the personality.

use oci_spec::runtime::{LinuxPersonalityDomain, Process, Spec};

use super::{InitError, Result};

/// Writes `linux.sysctl` under `/proc/sys`, inside the container's
/// namespaces (validated beforehand to be namespaced ones).
pub(crate) fn set_sysctls(spec: &Spec) -> Result<()> {
    let Some(sysctls) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in sysctls {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value)
            .map_err(|e| InitError::io(format!("linux.sysctl: setting {key} to {value:?}"), e))?;
    }
    Ok(())
}

/// Applies `process.oomScoreAdj`. Lowering the score needs CAP_SYS_RESOURCE,
/// which the error says when that is what failed.
pub(crate) fn set_oom_score_adj(process: &Process) -> Result<()> {
    let Some(score) = process.oom_score_adj() else {
        return Ok(());
    };
    std::fs::write("/proc/self/oom_score_adj", score.to_string()).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (lowering the OOM score needs CAP_SYS_RESOURCE, which the runtime does not have here)"
        } else {
            ""
        };
        InitError::io(format!("process.oomScoreAdj: setting {score}{hint}"), e)
    })
}

/// Applies `linux.personality`.
pub(crate) fn set_personality(spec: &Spec) -> Result<()> {
    let Some(personality) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) else {
        return Ok(());
    };
    let persona: libc::c_ulong = match personality.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality(2) takes a plain integer and changes only this process.
    if unsafe { libc::personality(persona) } == -1 {
        return Err(InitError::io(
            format!("linux.personality: setting {:?}", personality.domain()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
