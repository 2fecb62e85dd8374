//! Pure logic: network rules, path normalisation, the filter object, the
//! system view's arithmetic, serialisation.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompOperator};

use crate::paths::normalize;
use crate::{
    filter, NetAction, NetRule, NetworkPolicy, Policy, PolicyError, SystemView, DENIED_BY_DEFAULT,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn net_rules_parse_and_print_back() {
    for text in [
        "10.0.0.0/8",
        "127.0.0.1/32:8080",
        "::1/128:1000-2000",
        "0.0.0.0/0:53",
        "fd00::/8",
        "0.0.0.0/0",
    ] {
        let rule: NetRule = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(rule.to_string(), text);
    }
    assert_eq!(
        "1.2.3.4/32:80-80".parse::<NetRule>().unwrap().to_string(),
        "1.2.3.4/32:80"
    );
}

#[test]
fn bad_net_rules_name_the_text() {
    for (text, reason) in [
        ("10.0.0.0", "expected ADDRESS/PREFIX"),
        ("10.0.0/8", "not an IP address"),
        ("10.0.0.0/33", "prefix length too long"),
        ("10.0.0.1/8", "bits set after the prefix"),
        ("10.0.0.0/8:http", "not a port number"),
        ("10.0.0.0/8:90-80", "ends before it starts"),
        ("::1/129", "prefix length too long"),
        ("10.0.0.0/x", "not a prefix length"),
    ] {
        let err = text.parse::<NetRule>().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("network rule {text:?}: ")),
            "{err}"
        );
        assert!(err.contains(reason), "{text}: {err}");
    }
}

#[test]
fn deny_wins_over_allow_which_wins_over_the_default() {
    let policy = NetworkPolicy {
        default: NetAction::Deny,
        allow: vec![
            "10.0.0.0/8".parse().unwrap(),
            "::1/128:1000-2000".parse().unwrap(),
        ],
        deny: vec!["10.1.0.0/16:22".parse().unwrap()],
    };
    assert_eq!(policy.decide(ip("10.2.3.4"), 22), NetAction::Allow);
    assert_eq!(policy.decide(ip("10.1.3.4"), 22), NetAction::Deny);
    assert_eq!(policy.decide(ip("10.1.3.4"), 23), NetAction::Allow);
    assert_eq!(policy.decide(ip("11.0.0.1"), 80), NetAction::Deny);
    assert_eq!(policy.decide(ip("::1"), 1500), NetAction::Allow);
    assert_eq!(policy.decide(ip("::1"), 999), NetAction::Deny);
    // Mapped addresses are judged as IPv4, v4 rules never match v6.
    assert_eq!(policy.decide(ip("::ffff:10.1.0.1"), 22), NetAction::Deny);
    assert_eq!(policy.decide(ip("::ffff:10.2.0.1"), 22), NetAction::Allow);
    assert_eq!(policy.decide(ip("::a00:1"), 22), NetAction::Deny);
}

#[test]
fn paths_normalise_lexically() {
    let n = |base: &str, rel: &str| normalize(base.as_bytes(), rel.as_bytes());
    assert_eq!(n("/", "/etc/../etc/./secret"), Path::new("/etc/secret"));
    assert_eq!(
        n("/home/user", "../../../../etc//passwd"),
        Path::new("/etc/passwd")
    );
    assert_eq!(n("/home/user", "file"), Path::new("/home/user/file"));
    assert_eq!(n("/home", "/abs"), Path::new("/abs"));
    assert_eq!(n("/", ".."), Path::new("/"));
}

#[test]
fn the_filter_notifies_mediated_calls_and_denies_dangerous_ones() {
    let seccomp = filter(&Policy::default()).unwrap();
    assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
    let rules = seccomp.syscalls().clone().unwrap();
    let notified: Vec<&String> = rules
        .iter()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
        .flat_map(|r| r.names())
        .collect();
    for name in [
        "open",
        "openat",
        "openat2",
        "newfstatat",
        "execve",
        "connect",
        "sendmsg",
        "uname",
        "setuid",
    ] {
        assert!(notified.iter().any(|n| *n == name), "{name} not notified");
    }
    assert!(
        !notified.iter().any(|n| *n == "unshare"),
        "unshare is denied, not notified"
    );
    let fstatat = rules.iter().find(|r| r.names() == &["newfstatat"]).unwrap();
    let arg = fstatat.args().clone().unwrap()[0];
    assert_eq!(
        (arg.index(), arg.value(), arg.value_two(), arg.op()),
        (
            3,
            libc::AT_EMPTY_PATH as u64,
            Some(0),
            LinuxSeccompOperator::ScmpCmpMaskedEq
        )
    );
    let sendto = rules.iter().find(|r| r.names() == &["sendto"]).unwrap();
    let arg = sendto.args().clone().unwrap()[0];
    assert_eq!(
        (arg.index(), arg.value(), arg.op()),
        (4, 0, LinuxSeccompOperator::ScmpCmpNe)
    );
    let denied = rules
        .iter()
        .find(|r| r.action() == LinuxSeccompAction::ScmpActErrno)
        .unwrap();
    assert_eq!(denied.errno_ret(), Some(libc::EPERM as u32));
    assert_eq!(denied.names().len(), DENIED_BY_DEFAULT.len());

    let allowing = filter(&Policy {
        allow_syscalls: vec!["unshare".into(), "mount".into()],
        ..Policy::default()
    })
    .unwrap();
    let rules = allowing.syscalls().clone().unwrap();
    let denied = rules
        .iter()
        .find(|r| r.action() == LinuxSeccompAction::ScmpActErrno)
        .unwrap();
    assert!(!denied
        .names()
        .iter()
        .any(|n| n == "unshare" || n == "mount"));
    assert!(rules
        .iter()
        .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify
            && r.names().iter().any(|n| n == "unshare")));
}

#[test]
fn the_filter_refuses_bad_policies() {
    let err = filter(&Policy {
        allow_syscalls: vec!["read".into()],
        ..Policy::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, PolicyError::NotDenied(ref n) if n == "read"),
        "{err}"
    );
    let err = filter(&Policy {
        hidden: vec!["etc/shadow".into()],
        ..Policy::default()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "hidden: \"etc/shadow\" is not an absolute path"
    );
}

#[test]
fn the_filter_compiles_with_libseccomp() {
    let seccomp = filter(&Policy::default()).unwrap();
    let compiled = strata_seccomp::Filter::compile_for_runtime(&seccomp).unwrap();
    assert!(compiled.wants_listener());
}

#[test]
fn the_view_counts_cpus_and_reads_live_memory() {
    let view = SystemView::new(SystemTime::now());
    assert_eq!(view.cpus(8), 8);
    assert_eq!(view.clone().with_cpu_quota(150_000, 100_000).cpus(8), 2);
    assert_eq!(view.clone().with_cpu_quota(1_000, 100_000).cpus(8), 1);
    assert_eq!(view.clone().with_cpuset("0-2,5").cpus(8), 4);
    assert_eq!(
        view.clone()
            .with_cpuset("0-2,5")
            .with_cpu_quota(200_000, 100_000)
            .cpus(8),
        2
    );
    assert_eq!(view.clone().with_cpu_quota(900_000, 100_000).cpus(2), 2);

    let cgroup = tempfile::tempdir().unwrap();
    std::fs::write(cgroup.path().join("memory.usage_in_bytes"), "104857600\n").unwrap();
    std::fs::write(
        cgroup.path().join("memory.stat"),
        "cache 1\ntotal_cache 41943040\n",
    )
    .unwrap();
    let view = view
        .with_memory_limit(256 << 20)
        .with_memory_cgroup(cgroup.path());
    let mem = view.memory().unwrap();
    assert_eq!(
        (mem.total, mem.free, mem.cache),
        (256 << 20, 156 << 20, 40 << 20)
    );
    let meminfo = view.meminfo("MemTotal:       16000000 kB\nMemFree:        1 kB\nMemAvailable:   2 kB\nActive:         3 kB\n");
    assert_eq!(
        meminfo,
        "MemTotal:         262144 kB\nMemFree:          159744 kB\nMemAvailable:     200704 kB\nActive:         3 kB\n"
    );
}

#[test]
fn policy_and_view_cross_as_json() {
    let policy = Policy {
        hidden: vec!["/etc/shadow".into()],
        read_only: vec!["/usr".into()],
        network: NetworkPolicy {
            default: NetAction::Deny,
            allow: vec!["10.0.0.0/8:443".parse().unwrap()],
            deny: vec![],
        },
        kernel_release: Some("6.1.0".into()),
        allow_syscalls: vec!["mount".into()],
    };
    let json = serde_json::to_value(&policy).unwrap();
    assert_eq!(json["network"]["allow"][0], "10.0.0.0/8:443");
    assert_eq!(json["network"]["default"], "deny");
    assert_eq!(serde_json::from_value::<Policy>(json).unwrap(), policy);
    assert!(serde_json::from_str::<Policy>(r#"{"network":{"allow":["10.0.0.0"]}}"#).is_err());

    let view = SystemView::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .with_memory_limit(1 << 30)
        .with_cpu_quota(50_000, 100_000);
    let text = serde_json::to_string(&view).unwrap();
    assert_eq!(serde_json::from_str::<SystemView>(&text).unwrap(), view);
}

#[test]
fn stats_render_as_a_table() {
    let counter = crate::stats::Counter::default();
    counter.count("openat", crate::stats::Outcome::Notified);
    counter.count("openat", crate::stats::Outcome::Emulated);
    let text = counter.snapshot().to_string();
    assert_eq!(
        text,
        "syscall             notified  emulated continued    denied\nopenat                     1         1         0         0\n"
    );
}

/// The listener takes `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` on this kernel
/// (6.6 and later), which is what keeps a round trip on one CPU.
#[test]
fn the_listener_takes_synchronous_wake_up() {
    let mut seccomp = crate::filter(&crate::Policy::default()).expect("filter");
    seccomp.set_listener_path(None);
    let compiled = strata_seccomp::Filter::compile_for_runtime(&seccomp).expect("compile");
    // SAFETY: the child only makes system calls and leaves through _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        let code = match compiled.load() {
            Ok(Some(fd)) => match crate::notify::Listener::new(fd) {
                Ok(listener) => match listener.set_sync_wake_up() {
                    Ok(()) => 0,
                    Err(_) => 3,
                },
                Err(_) => 2,
            },
            _ => 1,
        };
        // SAFETY: _exit ends the child at once.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waitpid writes the status of our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}"
    );
}
