//! Process security settings: capabilities, `noNewPrivileges`, rlimits, the
//! umask, the user and groups, and the OOM score.

use serde_json::{json, Value};
use strata_e2e::{assert_code, run_case, runtime_tests, CmdOutput, Containerd, RunOptions, STRATA};

/// The capabilities containerd's default spec gives a container, with their
/// kernel bit numbers.
const DEFAULT_CAPS: [(&str, u32); 14] = [
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_RAW", 13),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_MKNOD", 27),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_SETFCAP", 31),
];

/// The bit of `CAP_NET_RAW`.
const NET_RAW_BIT: u32 = 13;

/// The default set as `/proc/PID/status` prints it.
fn default_mask() -> u64 {
    DEFAULT_CAPS.iter().fold(0, |m, (_, bit)| m | 1 << bit)
}

/// The value of `key` in `/proc/self/status` text such as `CapEff:\t00...`.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
        .trim()
}

fn hex_field(status: &str, key: &str) -> u64 {
    let v = status_field(status, key);
    u64::from_str_radix(v, 16).unwrap_or_else(|e| panic!("{key} {v:?}: {e}"))
}

/// Runs `args` from the default full spec after `edit` changed it.
fn run_spec(c: &Containerd, id: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> CmdOutput {
    let mut spec = c.spec_for(id, args).unwrap();
    edit(&mut spec);
    c.run_with_spec(c.runtime(), id, &spec).unwrap()
}

/// A default container has exactly containerd's default capabilities:
/// effective, permitted and bounding; nothing inheritable or ambient.
fn default_capabilities(c: &Containerd) {
    let out = c
        .run(&RunOptions::new("caps", ["cat", "/proc/self/status"]))
        .unwrap();
    assert_code(&out, 0);
    let want = default_mask();
    assert_eq!(want, 0xa80425fb);
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(
            hex_field(&out.stdout, key),
            want,
            "{key}: {}",
            status_field(&out.stdout, key)
        );
    }
    assert_eq!(hex_field(&out.stdout, "CapInh"), 0);
    assert_eq!(hex_field(&out.stdout, "CapAmb"), 0);

    // The same as grep prints it.
    let out = c
        .run(&RunOptions::new(
            "capeff",
            ["grep", "CapEff", "/proc/self/status"],
        ))
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout.trim(), format!("CapEff:\t{want:016x}"), "{out}");
}

/// Without CAP_NET_RAW the raw socket busybox ping opens is refused (and
/// the unprivileged ICMP socket it falls back to is not allowed either).
fn no_net_raw_no_ping(c: &Containerd) {
    let out = c
        .run(
            &RunOptions::new(
                "noraw",
                [
                    "sh",
                    "-c",
                    "grep CapEff /proc/self/status; ping -c1 -W2 127.0.0.1",
                ],
            )
            .flag("--cap-drop")
            .flag("CAP_NET_RAW"),
        )
        .unwrap();
    assert_ne!(out.code, 0, "ping worked without CAP_NET_RAW: {out}");
    assert!(
        out.stderr.to_lowercase().contains("permission denied"),
        "not a permission error: {out}"
    );
    let eff = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap_or_else(|| panic!("no CapEff in {out}"));
    assert_eq!(eff, default_mask() & !(1 << NET_RAW_BIT), "{out}");
}

/// The container's own network namespace has its loopback interface up:
/// `/sys/class/net/lo/flags` has IFF_UP (0x1).
fn loopback_up(c: &Containerd) {
    let out = c
        .run(&RunOptions::new("lo", ["cat", "/sys/class/net/lo/flags"]))
        .unwrap();
    assert_code(&out, 0);
    let flags = u32::from_str_radix(out.stdout.trim().trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(flags & 0x1, 0x1, "lo is down in the container: {out}");
}

/// A privileged container may open raw sockets: ping to its own loopback
/// succeeds.
fn privileged_ping(c: &Containerd) {
    let out = c
        .run(&RunOptions::new("rawok", ["ping", "-c1", "-W2", "127.0.0.1"]).flag("--privileged"))
        .unwrap();
    assert!(
        !out.stderr.to_lowercase().contains("permission denied"),
        "the raw socket was refused despite --privileged: {out}"
    );
    assert_code(&out, 0);
    assert!(out.stdout.contains("1 packets received"), "{out}");
}

/// `ctr run` sets `noNewPrivileges` unless told `--allow-new-privs`; the
/// kernel shows it as `NoNewPrivs`.
fn no_new_privileges(c: &Containerd) {
    let out = c
        .run(&RunOptions::new(
            "nnp",
            ["grep", "NoNewPrivs", "/proc/self/status"],
        ))
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout.trim(), "NoNewPrivs:\t1", "{out}");

    let out = c
        .run(
            &RunOptions::new("nnp-off", ["grep", "NoNewPrivs", "/proc/self/status"])
                .flag("--allow-new-privs"),
        )
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout.trim(), "NoNewPrivs:\t0", "{out}");

    // The same from a full spec.
    let out = run_spec(
        c,
        "nnp-spec",
        &["grep", "NoNewPrivs", "/proc/self/status"],
        |s| {
            s["process"]["noNewPrivileges"] = json!(true);
        },
    );
    assert_code(&out, 0);
    assert_eq!(out.stdout.trim(), "NoNewPrivs:\t1", "{out}");
}

/// `process.rlimits` set the soft and hard limits.
fn rlimits(c: &Containerd) {
    let out = run_spec(c, "rlimits", &["sh", "-c", "ulimit -n; ulimit -Hn"], |s| {
        s["process"]["rlimits"] = json!([{ "type": "RLIMIT_NOFILE", "soft": 123, "hard": 456 }]);
    });
    assert_code(&out, 0);
    assert_eq!(out.stdout, "123\n456\n", "{out}");
}

/// `process.user.umask` is the process's umask, and new files get it.
fn umask(c: &Containerd) {
    let out = run_spec(
        c,
        "umask",
        &[
            "sh",
            "-c",
            "umask; touch /run/f; mkdir /run/d; stat -c %a /run/f /run/d",
        ],
        |s| s["process"]["user"]["umask"] = json!(0o027),
    );
    assert_code(&out, 0);
    assert_eq!(out.stdout, "0027\n640\n750\n", "{out}");
}

/// `process.user` gives the uid, gid and supplementary groups.
fn user_and_groups(c: &Containerd) {
    let out = run_spec(
        c,
        "user",
        &[
            "sh",
            "-c",
            "id -u; id -g; grep -E '^(Uid|Gid|Groups):' /proc/self/status",
        ],
        |s| s["process"]["user"] = json!({ "uid": 1000, "gid": 1001, "additionalGids": [10, 20] }),
    );
    assert_code(&out, 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("1000"), "{out}");
    assert_eq!(lines.get(1).copied(), Some("1001"), "{out}");
    let status = out.stdout.as_str();
    assert_eq!(
        status_field(status, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000"; 4],
        "{out}"
    );
    assert_eq!(
        status_field(status, "Gid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1001"; 4],
        "{out}"
    );
    assert_eq!(status_field(status, "Groups"), "10 20", "{out}");
}

/// A raised `oomScoreAdj` is the process's OOM score adjustment.
fn oom_score_raised(c: &Containerd) {
    let out = run_spec(c, "oomup", &["cat", "/proc/self/oom_score_adj"], |s| {
        s["process"]["oomScoreAdj"] = json!(500);
    });
    assert_code(&out, 0);
    assert_eq!(out.stdout.trim(), "500", "{out}");
}

runtime_tests!(
    default_capabilities,
    no_net_raw_no_ping,
    loopback_up,
    privileged_ping,
    no_new_privileges,
    rlimits,
    umask,
    user_and_groups,
    oom_score_raised,
);

/// Lowering the OOM score needs CAP_SYS_RESOURCE, which root lacks on this
/// host: Create fails naming `oomScoreAdj` and the missing capability, and
/// nothing is left behind.
///
/// runc 1.1.5 fails too, but only says "can't get final child's PID from
/// pipe: EOF", so this is checked with Strata alone.
#[test]
fn oom_score_lowered_fails_strata() {
    run_case(STRATA, |c| {
        let out = run_spec(c, "oomdown", &["true"], |s| {
            s["process"]["oomScoreAdj"] = json!(-500);
        });
        assert_ne!(out.code, 0, "lowering the OOM score worked: {out}");
        assert!(out.stderr.contains("oomScoreAdj"), "{out}");
        assert!(out.stderr.contains("CAP_SYS_RESOURCE"), "{out}");
        assert!(c.containers().unwrap().is_empty());
        assert!(c.tasks().unwrap().is_empty());
    });
}
