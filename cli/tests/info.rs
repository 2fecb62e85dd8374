//! The informational commands: `features`, `--version`, `spec`, `list`,
//! `events --stats`, `update` and `check`.

mod common;

use common::{unique_id, Fixture};

#[test]
fn features_and_version() {
    let fx = Fixture::new("features", &["true"]);
    let out = fx.strata(&["features"]).ok();
    let features: oci_spec_check::Features = serde_json::from_str(&out.stdout).expect("features");
    assert_eq!(features.oci_version_min, "1.0.0");
    assert!(features.oci_version_max.starts_with("1."));
    assert!(features.hooks.iter().any(|h| h == "poststop"));
    assert!(features.mount_options.iter().any(|o| o == "rbind"));
    let value = out.json();
    assert!(value["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .any(|n| n == "user"));
    assert_eq!(value["linux"]["seccomp"]["enabled"], true);
    assert_eq!(value["linux"]["cgroup"]["systemd"], false);
    assert_eq!(value["linux"]["selinux"]["enabled"], false);
    for flag in ["--version", "-v"] {
        let out = fx.strata(&[flag]).ok();
        let mut lines = out.stdout.lines();
        let first = lines.next().expect("a line");
        assert!(first.starts_with("strata version "), "{first}");
        assert!(lines.any(|l| l.starts_with("spec: 1.")), "{}", out.stdout);
    }
    fx.finish();
}

/// The fields of the features document the test checks.
mod oci_spec_check {
    /// Just enough of runtime-spec `features.md`.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Features {
        /// Oldest spec version.
        pub oci_version_min: String,
        /// Newest spec version.
        pub oci_version_max: String,
        /// Hook names.
        pub hooks: Vec<String>,
        /// Mount options.
        pub mount_options: Vec<String>,
    }
}

#[test]
fn list_events_and_update() {
    let fx = Fixture::new("list", &["sleep", "100"]);
    let empty = fx.strata(&["list", "--format", "json"]).ok().json();
    assert_eq!(empty, serde_json::json!([]));
    let a = unique_id("list-a");
    let b = unique_id("list-b");
    fx.start(&a);
    fx.create(&b);
    let list = fx.strata(&["list", "--format", "json"]).ok().json();
    let entries = list.as_array().expect("array");
    assert_eq!(entries.len(), 2, "{list}");
    let status_of = |id: &str| {
        entries
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["status"].clone())
    };
    assert_eq!(status_of(&a), Some("running".into()));
    assert_eq!(status_of(&b), Some("created".into()));
    assert!(entries.iter().all(|e| e["owner"] == "root"), "{list}");
    let table = fx.strata(&["list"]).ok().stdout;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    );
    assert_eq!(lines.count(), 2, "{table}");
    let quiet = fx.strata(&["list", "-q"]).ok().stdout;
    let mut ids: Vec<&str> = quiet.lines().collect();
    ids.sort();
    let mut expected = vec![a.as_str(), b.as_str()];
    expected.sort();
    assert_eq!(ids, expected);

    let event = fx.strata(&["events", "--stats", &a]).ok().json();
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], a.as_str());
    assert!(
        event["data"]["pids"]["current"].as_u64().expect("pids") >= 1,
        "{event}"
    );
    assert!(
        event["data"]["memory"]["usage"]["usage"].is_u64(),
        "{event}"
    );
    assert!(event["data"]["cpu"]["usage"]["total"].is_u64(), "{event}");

    fx.strata(&["update", "--pids-limit", "50", "--memory", "64m", &a])
        .ok();
    let read = |controller: &str, file: &str| {
        fx.cgroup_dirs(&a)
            .iter()
            .filter(|d| {
                d.starts_with(format!("/sys/fs/cgroup/{controller}")) || d.join(file).exists()
            })
            .find_map(|d| std::fs::read_to_string(d.join(file)).ok())
            .map(|s| s.trim().to_owned())
    };
    assert_eq!(read("pids", "pids.max").as_deref(), Some("50"));
    let memory = read("memory", "memory.limit_in_bytes").or_else(|| read("", "memory.max"));
    assert_eq!(memory.as_deref(), Some("67108864"));
    let resources = fx.dir.path().join("resources.json");
    std::fs::write(&resources, r#"{"pids": {"limit": 60}}"#).expect("write");
    fx.strata(&["update", "-r", resources.to_str().expect("utf-8"), &a])
        .ok();
    assert_eq!(read("pids", "pids.max").as_deref(), Some("60"));
    // A bad value is refused by its field, as the shim's Update does, and
    // changes nothing.
    std::fs::write(&resources, r#"{"memory": {"limit": -5}}"#).expect("write");
    fx.strata(&["update", "-r", resources.to_str().expect("utf-8"), &a])
        .fails_with("linux.resources.memory.limit");
    let memory = read("memory", "memory.limit_in_bytes").or_else(|| read("", "memory.max"));
    assert_eq!(memory.as_deref(), Some("67108864"));

    for id in [&a, &b] {
        fx.strata(&["delete", "--force", id]).ok();
    }
    fx.strata(&["events", "--stats", &a])
        .fails_with("does not exist");
    fx.finish();
}

#[test]
fn check_reports_every_item() {
    let fx = Fixture::new("check", &["true"]);
    let only_native = fx.dir.path().join("native.toml");
    std::fs::write(
        &only_native,
        "default_class = \"native\"\n[classes.native]\nbackend = \"native\"\n",
    )
    .expect("write");
    let mixed = fx.dir.path().join("mixed.toml");
    std::fs::write(
        &mixed,
        "default_class = \"native\"\n[classes.native]\nbackend = \"native\"\n\
         [classes.vm]\nbackend = \"microvm\"\n",
    )
    .expect("write");
    let out = fx.strata(&["--config", only_native.to_str().expect("utf-8"), "check"]);
    assert_eq!(out.code, 0, "{}", out.describe());
    let mut names = Vec::new();
    for line in out.stdout.lines() {
        let mut words = line.split_whitespace();
        let verdict = words.next().expect("verdict");
        assert!(
            ["ok", "missing", "no"].contains(&verdict),
            "bad verdict in {line:?}"
        );
        names.push(words.next().expect("item").to_owned());
        assert!(words.next().is_some(), "no detail in {line:?}");
    }
    for item in [
        "namespace:user",
        "namespace:pid",
        "cgroups",
        "cgroup:memory",
        "seccomp",
        "seccomp:user-notify",
        "kvm",
        "hardware-virtualization",
        "containerd",
        "class:native",
    ] {
        assert!(names.iter().any(|n| n == item), "{item} in {}", out.stdout);
    }
    assert!(
        out.stdout.contains("ok       class:native"),
        "{}",
        out.stdout
    );

    let out = fx.strata(&["--config", mixed.to_str().expect("utf-8"), "check"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(
        out.stdout.lines().any(|l| l.starts_with("no ")
            && l.contains("class:vm")
            && l.contains("backend \"microvm\" is not available in the strata command yet")),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("class:vm"), "{}", out.describe());
    fx.finish();
}
