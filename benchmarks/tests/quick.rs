//! Runs the benchmark in `--quick` mode against the shim of this build's
//! profile and checks that it produced numbers for runc and the native
//! class, a report, JSON results and SVG charts that parse, and a reason
//! for every class it skipped. Needs what the end-to-end tests need (root,
//! containerd, runc, busybox-static); the numbers themselves are not
//! checked.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const SHIM_NAME: &str = "containerd-shim-strata-v2";

/// Groups every measured runtime must have metrics in.
const GROUPS: [&str; 6] = ["start", "syscalls", "fileio", "tcp", "memory", "density"];

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

/// Checks one measured runtime's entry in `results.json`.
fn check_runtime(rt: &Value, label: &str) {
    let metrics = rt["metrics"].as_array().expect("metrics listed");
    for group in GROUPS {
        let of_group: Vec<&Value> = metrics.iter().filter(|m| m["group"] == group).collect();
        assert!(!of_group.is_empty(), "{label}: no {group} metrics");
        for m in of_group {
            let name = &m["name"];
            let samples = m["samples"].as_array().expect("samples listed");
            assert!(!samples.is_empty(), "{label}: {group} {name}: no samples");
            assert!(samples.iter().all(is_number), "{label}: {group} {name}");
            assert!(
                is_number(&m["summary"]["median"]),
                "{label}: {group} {name}: median"
            );
            if label != "runc" && m["samples"].as_array().is_some_and(|s| s.len() > 1) {
                assert!(
                    m["ratio_to_runc"].is_null() || is_number(&m["ratio_to_runc"]),
                    "{label}: {group} {name}: ratio"
                );
            }
        }
    }
    let checks = rt["isolation"].as_array().expect("isolation listed");
    assert!(!checks.is_empty(), "{label}: no isolation checks");
    for c in checks {
        let result = c["result"].as_str().unwrap_or_default();
        assert!(
            ["blocked", "allowed", "info", "skipped"].contains(&result),
            "{label}: isolation check {c}"
        );
    }
    assert!(
        !rt["memory"]["density"]
            .as_array()
            .expect("density listed")
            .is_empty(),
        "{label}: no density points"
    );
}

#[test]
fn quick_run_writes_report_results_and_charts() {
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

    let dirs: Vec<PathBuf> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "expected one dated directory: {dirs:?}");
    let dir = &dirs[0];

    let json = fs::read_to_string(dir.join("results.json")).unwrap();
    let results: Value = serde_json::from_str(&json).unwrap();
    let runtimes = results["runtimes"].as_array().expect("runtimes listed");
    for label in ["runc", "native"] {
        let rt = runtimes
            .iter()
            .find(|r| r["label"] == label)
            .unwrap_or_else(|| panic!("no results for {label}: {json}"));
        check_runtime(rt, label);
    }
    let skipped = results["skipped"].as_array().expect("skipped listed");
    for class in ["native", "interpose", "microvm"] {
        let measured = runtimes.iter().any(|r| r["label"] == class);
        let skip = skipped.iter().find(|s| s["label"] == class);
        assert!(
            measured != skip.is_some(),
            "{class} must be either measured or skipped: {json}"
        );
        if let Some(s) = skip {
            assert!(
                !s["reason"].as_str().unwrap_or_default().is_empty(),
                "{class} skipped without a reason"
            );
        }
    }

    let report = fs::read_to_string(dir.join("report.md")).unwrap();
    for heading in [
        "## Classes",
        "## Start latency",
        "## System calls in the container",
        "## File I/O in the container",
        "## Loopback TCP in the container",
        "## Memory per idle container",
        "## Density",
        "## Isolation",
    ] {
        assert!(report.contains(heading), "report lacks {heading}");
    }
    for s in skipped {
        let label = s["label"].as_str().unwrap();
        assert!(
            report.contains(&format!("| {label} | ")) && report.contains("skipped: "),
            "report does not list skipped {label}"
        );
    }

    let charts: Vec<&str> = results["charts"]
        .as_array()
        .expect("charts listed")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for group in GROUPS.iter().chain(&["isolation"]) {
        let name = format!("{group}.svg");
        assert!(charts.contains(&name.as_str()), "no chart {name}");
        let svg = fs::read_to_string(dir.join(&name)).unwrap();
        let doc = roxmltree::Document::parse(&svg)
            .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg", "{name}");
        assert!(
            doc.descendants().any(|n| n.has_tag_name("rect")),
            "{name} draws nothing"
        );
        assert!(report.contains(&format!("({name})")), "report lacks {name}");
    }
}
