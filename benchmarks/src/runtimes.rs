//! The runtimes under measurement: runc, the reference, and the Strata
//! classes asked for, each reached through its class-named shim
//! (`io.containerd.strata-<class>.v2`). A class whose first container
//! fails to run is skipped, with the reason kept for the report.

use anyhow::{bail, ensure, Result};
use serde::Serialize;
use strata_e2e::containerd::SHIM_CLASSES;
use strata_e2e::{Containerd, RUNC};

use crate::latency;

/// A runtime under measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// Short name for reports and container IDs: `runc` or the class.
    pub label: String,
    /// containerd runtime name (`ctr run --runtime`).
    pub name: String,
}

impl Runtime {
    /// containerd's runc shim.
    pub fn runc() -> Self {
        Self {
            label: "runc".to_owned(),
            name: RUNC.to_owned(),
        }
    }

    /// Strata's shim for `class`.
    pub fn strata(class: &str) -> Self {
        Self {
            label: class.to_owned(),
            name: format!("io.containerd.strata-{class}.v2"),
        }
    }
}

/// A class that could not run on this host.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The class.
    pub label: String,
    /// Its runtime name.
    pub runtime: String,
    /// Why: what its first `ctr run` printed.
    pub reason: String,
}

/// Parses `--classes`: a comma-separated list of Strata classes, each
/// named once.
pub fn parse_classes(list: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        ensure!(
            SHIM_CLASSES.contains(&c),
            "unknown class {c:?} in --classes (known: {})",
            SHIM_CLASSES.join(", ")
        );
        ensure!(!out.iter().any(|o| o == c), "class {c:?} named twice");
        out.push(c.to_owned());
    }
    ensure!(!out.is_empty(), "--classes names no class");
    Ok(out)
}

/// The most telling line of a failed `ctr run`: the last line that
/// mentions an error, else the last non-empty line.
fn reason_of(error: &str) -> String {
    let lines: Vec<&str> = error
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.contains("ctr:") || l.contains("error"))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_else(|| "failed without output".to_owned())
}

/// Runs one `true` container on `rt`; the error text if it fails. A
/// container record left by the failure is removed.
pub fn probe_class(c: &Containerd, rt: &Runtime) -> std::result::Result<(), String> {
    let id = format!("avail-{}", rt.label);
    match latency::run_once(c, &rt.name, &id, &["true"]) {
        Ok(_) => Ok(()),
        Err(e) => {
            if c.containers().is_ok_and(|ids| ids.contains(&id)) {
                let _ = c.remove(&id);
            }
            Err(reason_of(&format!("{e:#}")))
        }
    }
}

/// runc followed by every class of `classes` that runs here; the others
/// come back as [`Skipped`]. Fails if runc itself cannot run a container.
pub fn select(c: &Containerd, classes: &[String]) -> Result<(Vec<Runtime>, Vec<Skipped>)> {
    let runc = Runtime::runc();
    if let Err(e) = probe_class(c, &runc) {
        bail!("runc cannot run a container here: {e}");
    }
    let mut runtimes = vec![runc];
    let mut skipped = Vec::new();
    for class in classes {
        let rt = Runtime::strata(class);
        match probe_class(c, &rt) {
            Ok(()) => {
                eprintln!("[classes] {class}: available");
                runtimes.push(rt);
            }
            Err(reason) => {
                eprintln!("[classes] {class}: skipped: {reason}");
                skipped.push(Skipped {
                    label: rt.label,
                    runtime: rt.name,
                    reason,
                });
            }
        }
    }
    Ok((runtimes, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(
            parse_classes("native, interpose").unwrap(),
            vec!["native".to_owned(), "interpose".to_owned()]
        );
        assert!(parse_classes("native,native").is_err());
        assert!(parse_classes("gvisor").is_err());
        assert!(parse_classes(",").is_err());
        assert_eq!(
            Runtime::strata("microvm").name,
            "io.containerd.strata-microvm.v2"
        );
    }

    #[test]
    fn reasons() {
        let e = "`ctr run` failed (exit status: 1):\n\
                 ctr: failed to create shim task: backend \"interpose\" is not available yet\n";
        assert_eq!(
            reason_of(e),
            "ctr: failed to create shim task: backend \"interpose\" is not available yet"
        );
        assert_eq!(reason_of(""), "failed without output");
    }
}
