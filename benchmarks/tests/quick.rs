//! Runs the benchmark in `--quick` mode against the shim of this build's
//! profile and checks that it wrote a report and JSON results with numbers
//! for both runtimes. Needs what the end-to-end tests need (root,
//! containerd, runc, busybox-static); the numbers themselves are not
//! checked.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const SHIM_NAME: &str = "containerd-shim-strata-v2";

/// The Strata shim next to the benchmark binary (same profile), built with
/// cargo if it is missing.
fn shim() -> PathBuf {
    let bench = Path::new(env!("CARGO_BIN_EXE_benchmarks"));
    let dir = bench
        .parent()
        .expect("the benchmark binary has a directory");
    let shim = dir.join(SHIM_NAME);
    if !shim.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "strata-shim"]);
        if dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "building the shim failed: {status}");
    }
    assert!(shim.exists(), "{} is missing", shim.display());
    shim
}

fn is_number(v: &Value) -> bool {
    v.as_f64().is_some_and(f64::is_finite)
}

#[test]
fn quick_run_writes_report_and_results() {
    let shim = shim();
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_benchmarks"))
        .arg("--quick")
        .arg("--out")
        .arg(out.path())
        .arg("--shim")
        .arg(&shim)
        .status()
        .expect("running the benchmark");
    assert!(status.success(), "the benchmark failed: {status}");

    let json = fs::read_to_string(out.path().join("results.json")).unwrap();
    let results: Value = serde_json::from_str(&json).unwrap();
    let runtimes = results["runtimes"].as_array().expect("runtimes listed");
    for label in ["runc", "strata"] {
        let rt = runtimes
            .iter()
            .find(|r| r["label"] == label)
            .unwrap_or_else(|| panic!("no results for {label}: {json}"));
        for key in ["start_ms", "parallel_ms"] {
            let samples = rt[key].as_array().expect("samples listed");
            assert!(!samples.is_empty(), "{label}: no {key}");
            assert!(samples.iter().all(is_number), "{label}: {key}");
        }
        assert!(is_number(&rt["start"]["median"]), "{label}: start median");
        assert!(
            is_number(&rt["parallel"]["median"]),
            "{label}: parallel median"
        );
        for key in ["rss_kib", "pss_kib", "anon_kib"] {
            assert!(
                is_number(&rt["memory"]["per_container"][key]),
                "{label}: memory {key}"
            );
        }
    }

    let report = fs::read_to_string(out.path().join("report.md")).unwrap();
    for label in ["runc", "strata"] {
        let rows = report
            .lines()
            .filter(|l| l.starts_with(&format!("| {label} ")))
            .filter(|l| l.chars().any(|c| c.is_ascii_digit()))
            .count();
        assert_eq!(rows, 3, "{label}: expected a row per table in:\n{report}");
    }
}
