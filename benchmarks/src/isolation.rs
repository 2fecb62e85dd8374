//! The isolation matrix: `strata-probe isolation` in a container per
//! runtime (run by the probe containers of [`crate::workload`]), each check
//! blocked or allowed. The probe gets a host path that must stay invisible
//! (this containerd's config file) and a host address that must stay
//! unreachable (a listener on the host's loopback, open during the run).

use std::net::SocketAddr;

use serde::Serialize;
use serde_json::Value;
use strata_e2e::Containerd;

/// One check's outcome on one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The check (`raw_socket`, `mount_tmpfs`, …).
    pub probe: String,
    /// `blocked`, `allowed`, `info` or `skipped`.
    pub result: String,
    /// The errno the attempt failed with, if any.
    pub errno: Option<String>,
    /// What was observed.
    pub detail: String,
}

/// The arguments of `strata-probe isolation` for containers of `c`, with
/// `denied` as the address that must stay unreachable.
pub fn probe_args(c: &Containerd, denied: &SocketAddr) -> String {
    let hidden = c.dir().join("config.toml");
    format!("--hidden '{}' --denied {denied}", hidden.display())
}

/// The check one line of `strata-probe isolation` output reports.
pub fn check_of(line: &Value) -> Check {
    let text = |k: &str| line[k].as_str().unwrap_or_default().to_owned();
    Check {
        probe: text("probe"),
        result: text("result"),
        errno: line["errno"].as_str().map(str::to_owned),
        detail: text("detail"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_checks() {
        let l = serde_json::json!({
            "probe": "bpf", "result": "blocked", "errno": "EPERM", "detail": "refused"
        });
        let c = check_of(&l);
        assert_eq!(
            (c.probe.as_str(), c.result.as_str(), c.errno.as_deref()),
            ("bpf", "blocked", Some("EPERM"))
        );
        assert_eq!(check_of(&serde_json::json!({"probe": "x"})).errno, None);
    }
}
