//! Per-container kernel settings: namespaced sysctls, the personality and
//! the hostname.

use serde_json::{json, Value};
use strata_e2e::{assert_code, run_case, runtime_tests, CmdOutput, Containerd, STRATA};

fn run_spec(c: &Containerd, id: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> CmdOutput {
    let mut spec = c.spec_for(id, args).unwrap();
    edit(&mut spec);
    c.run_with_spec(c.runtime(), id, &spec).unwrap()
}

fn host_sysctl(key: &str) -> String {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_owned()
}

/// `linux.sysctl` of the container's network namespace show inside, and
/// the host's values stay as they were.
fn namespaced_sysctls(c: &Containerd) {
    let keys = ["net.ipv4.ip_forward", "net.ipv4.ip_default_ttl"];
    let host_before: Vec<String> = keys.iter().map(|k| host_sysctl(k)).collect();
    let out = run_spec(
        c,
        "sysctl",
        &[
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/net/ipv4/ip_default_ttl",
        ],
        |s| {
            s["linux"]["sysctl"] =
                json!({ "net.ipv4.ip_forward": "1", "net.ipv4.ip_default_ttl": "42" })
        },
    );
    assert_code(&out, 0);
    assert_eq!(out.stdout, "1\n42\n", "{out}");
    let host_after: Vec<String> = keys.iter().map(|k| host_sysctl(k)).collect();
    assert_eq!(host_before, host_after, "the host's sysctls changed");
}

/// A sysctl that is not namespaced (`vm.swappiness`) would change the host:
/// Create fails naming it, the host keeps its value, and nothing is left
/// behind. (runc says `sysctl "vm.swappiness" is not in a separate kernel
/// namespace`; Strata names the field, `linux.sysctl.vm.swappiness`.)
fn host_sysctl_refused(c: &Containerd) {
    let before = host_sysctl("vm.swappiness");
    let other = if before == "17" { "18" } else { "17" };
    let out = run_spec(c, "swappiness", &["true"], |s| {
        s["linux"]["sysctl"] = json!({ "vm.swappiness": other });
    });
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("vm.swappiness"), "{out}");
    if c.runtime() == STRATA {
        assert!(out.stderr.contains("linux.sysctl.vm.swappiness"), "{out}");
    }
    assert_eq!(
        host_sysctl("vm.swappiness"),
        before,
        "the host's vm.swappiness changed"
    );
    assert!(c.containers().unwrap().is_empty());
    assert!(c.tasks().unwrap().is_empty());
}

/// `hostname` in the spec is what `hostname` prints.
fn spec_hostname(c: &Containerd) {
    let out = run_spec(c, "hostname", &["hostname"], |s| {
        s["hostname"] = json!("inside")
    });
    assert_code(&out, 0);
    assert_eq!(out.stdout, "inside\n", "{out}");
}

runtime_tests!(namespaced_sysctls, host_sysctl_refused, spec_hostname);

/// `linux.personality` LINUX32: `uname -m` prints the 32-bit machine,
/// which is what busybox's `linux32` (setting the same personality itself)
/// prints, and without it the 64-bit one. runc 1.1.5 ignores
/// `linux.personality`, so this is checked with Strata alone.
#[test]
fn personality_linux32_strata() {
    run_case(STRATA, |c| {
        let out = run_spec(
            c,
            "pers64",
            &["sh", "-c", "uname -m; linux32 uname -m"],
            |_| {},
        );
        assert_code(&out, 0);
        assert_eq!(out.stdout, "x86_64\ni686\n", "{out}");

        let out = run_spec(c, "pers32", &["uname", "-m"], |s| {
            s["linux"]["personality"] = json!({ "domain": "LINUX32" });
        });
        assert_code(&out, 0);
        assert_eq!(out.stdout, "i686\n", "{out}");
    });
}
