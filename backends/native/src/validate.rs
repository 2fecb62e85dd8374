//! Checks a spec before anything is created, so that bad input fails with
//! the name of the field and leaves nothing behind.

use std::collections::HashSet;
use std::path::{Component, Path};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use strata_backend::{Error, Result};

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidSpec {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Rejects what the native backend cannot run safely.
pub(crate) fn check(spec: &Spec) -> Result<()> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid("process.args", "must name a program"));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(
            "process.cwd",
            format!("{:?} is not absolute", process.cwd()),
        ));
    }
    if spec.root().is_none() {
        return Err(invalid("root", "missing"));
    }
    let mut seen = HashSet::new();
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for (i, ns) in namespaces.iter().enumerate() {
        let field = format!("linux.namespaces[{i}]");
        if !seen.insert(ns.typ()) {
            return Err(invalid(field, format!("{} is listed twice", ns.typ())));
        }
        match ns.typ() {
            LinuxNamespaceType::User | LinuxNamespaceType::Time => {
                return Err(invalid(
                    field,
                    format!(
                        "{} namespaces are not supported by the native backend yet",
                        ns.typ()
                    ),
                ));
            }
            _ => {}
        }
        if let Some(path) = ns.path() {
            if !path.is_absolute() {
                return Err(invalid(
                    format!("{field}.path"),
                    format!("{path:?} is not absolute"),
                ));
            }
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        check_destination(&format!("mounts[{i}].destination"), m.destination())?;
    }
    Ok(())
}

fn check_destination(field: &str, path: &Path) -> Result<()> {
    if !path.is_absolute() {
        return Err(invalid(field, format!("{path:?} is not absolute")));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(field, format!("{path:?} contains \"..\"")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const BASE: &str = r#""ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}"#;

    #[test]
    fn a_minimal_spec_passes() {
        check(&spec(&format!("{{{BASE}}}"))).unwrap();
    }

    #[test]
    fn relative_and_dotdot_destinations_are_refused_by_field() {
        let s = spec(&format!(
            r#"{{{BASE},"mounts":[{{"destination":"/ok"}},{{"destination":"/a/../../etc"}}]}}"#
        ));
        let e = check(&s).unwrap_err().to_string();
        assert!(e.contains("mounts[1].destination"), "{e}");
        let s = spec(&format!(r#"{{{BASE},"mounts":[{{"destination":"tmp"}}]}}"#));
        assert!(check(&s)
            .unwrap_err()
            .to_string()
            .contains("mounts[0].destination"));
    }

    #[test]
    fn duplicate_namespaces_are_refused() {
        let s = spec(&format!(
            r#"{{{BASE},"linux":{{"namespaces":[{{"type":"pid"}},{{"type":"pid"}}]}}}}"#
        ));
        assert!(check(&s)
            .unwrap_err()
            .to_string()
            .contains("linux.namespaces[1]"));
    }

    #[test]
    fn empty_args_are_refused() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":[],"user":{"uid":0,"gid":0}}}"#,
        );
        assert!(check(&s).unwrap_err().to_string().contains("process.args"));
    }
}
