//! A microVM container's process is built by the native class's container
//! code inside the guest: the same capabilities, `noNewPrivileges`,
//! seccomp profile, user, limits, masked paths and PID namespace as the
//! reference runtime gives the same spec on the host.

use serde_json::json;
use strata_e2e::{assert_code, run_case, Containerd, RUNC, STRATA_MICROVM};

/// What the process reports about itself; every line must read the same
/// under both runtimes.
const REPORT: &str = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' \
    /proc/self/status; \
    echo uid $(id -u) gid $(id -g) groups $(id -G); \
    echo nofile $(ulimit -n); \
    mkdir /dev/shm/made 2>/dev/null && echo mkdir allowed || echo mkdir refused; \
    echo keys $(stat -c %t:%T /proc/keys); \
    echo pid $$; \
    echo hostname $(hostname)";

/// Runs [`REPORT`] under `runtime` with a spec that sets a user, a
/// seccomp profile refusing `mkdir`, `noNewPrivileges` and a hostname.
fn report(c: &Containerd, runtime: &str, id: &str) -> String {
    let mut spec = c.spec_for(id, &["sh", "-c", REPORT]).unwrap();
    spec["hostname"] = json!("guest-check");
    spec["process"]["user"] = json!({ "uid": 1000, "gid": 1000, "additionalGids": [1001] });
    spec["process"]["noNewPrivileges"] = json!(true);
    spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{
            "names": ["mkdir", "mkdirat"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1
        }]
    });
    let out = c.run_with_spec(runtime, id, &spec).unwrap();
    assert_code(&out, 0);
    out.stdout
}

fn same_as_runc(c: &Containerd) {
    let reference = report(c, RUNC, "host-process");
    let guest = report(c, STRATA_MICROVM, "guest-process");
    assert_eq!(guest, reference, "the guest's process differs from runc's");
    // And runc's is what the spec asks for, so that the comparison means
    // something: a reduced capability set, the flag, the filter, the user.
    for line in [
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "uid 1000 gid 1000 groups 1000 1001",
        "mkdir refused",
        "keys 1:3",
        "pid 1",
        "hostname guest-check",
    ] {
        assert!(guest.lines().any(|l| l == line), "no {line:?} in:\n{guest}");
    }
    let bounding = guest
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:\t"))
        .expect("no CapBnd line");
    assert_ne!(
        u64::from_str_radix(bounding, 16).unwrap() & (1 << 21),
        1 << 21,
        "CAP_SYS_ADMIN is in the bounding set {bounding}"
    );
}

#[test]
fn guest_process_matches_the_native_class() {
    run_case(STRATA_MICROVM, same_as_runc);
}
