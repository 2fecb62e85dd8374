//! Compiling profiles: what is refused, what is skipped, what gets in.

use serde_json::json;

use super::{profile, seccomp};
use crate::{Filter, SeccompError};

fn compile_err(json: serde_json::Value) -> SeccompError {
    Filter::compile(&seccomp(json)).expect_err("profile is refused")
}

fn pfc(json: serde_json::Value) -> String {
    Filter::compile(&seccomp(json))
        .expect("profile compiles")
        .pseudo_code()
        .expect("pseudo code")
}

/// The lines of `pfc` that filter the syscall `name`, in any architecture.
fn mentions(pfc: &str, name: &str) -> bool {
    pfc.contains(&format!("filter for syscall \"{name}\""))
}

#[test]
fn arg_index_out_of_range_names_the_field() {
    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["getpid"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["getppid"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["read"], "action": "SCMP_ACT_ERRNO" },
            {
                "names": ["write"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    { "index": 7, "value": 1, "op": "SCMP_CMP_EQ" },
                    { "index": 0, "value": 1, "op": "SCMP_CMP_EQ" },
                ],
            },
        ],
    }));
    assert!(matches!(err, SeccompError::Invalid { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "linux.seccomp.syscalls[3].args[0].index: 7 is out of range 0..=5"
    );
}

#[test]
fn arg_index_five_is_accepted() {
    Filter::compile(&seccomp(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["mmap"],
            "action": "SCMP_ACT_ERRNO",
            "args": [{ "index": 5, "value": 1, "op": "SCMP_CMP_GT" }],
        }],
    })))
    .expect("index 5 is the sixth argument");
}

#[test]
fn errno_ret_is_checked() {
    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000 }],
    }));
    assert_eq!(
        err.to_string(),
        "linux.seccomp.syscalls[0].errnoRet: 70000 is out of range 0..=65535"
    );

    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1 }],
    }));
    assert_eq!(
        err.to_string(),
        "linux.seccomp.syscalls[0].errnoRet: SCMP_ACT_ALLOW takes no errno \
         (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)"
    );

    let err = compile_err(json!({ "defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1 }));
    assert_eq!(
        err.to_string(),
        "linux.seccomp.defaultErrnoRet: SCMP_ACT_KILL takes no errno \
         (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)"
    );
}

#[test]
fn errno_and_trace_carry_their_value() {
    let text = pfc(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [
            { "names": ["getpid"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28 },
            { "names": ["rmdir"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["chdir"], "action": "SCMP_ACT_TRACE", "errnoRet": 7 },
            { "names": ["fchdir"], "action": "SCMP_ACT_TRACE" },
        ],
    }));
    assert!(text.contains("action ERRNO(38);"), "{text}");
    assert!(text.contains("action ERRNO(28);"), "{text}");
    assert!(
        text.contains("action ERRNO(1);"),
        "EPERM by default: {text}"
    );
    assert!(text.contains("action TRACE(7);"), "{text}");
    assert!(
        text.contains("action TRACE(1);"),
        "EPERM by default: {text}"
    );
}

#[test]
fn notify_default_and_missing_listener_path_are_refused() {
    let err = compile_err(json!({ "defaultAction": "SCMP_ACT_NOTIFY" }));
    assert_eq!(
        err.to_string(),
        "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action"
    );

    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["getpid"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["write"], "action": "SCMP_ACT_NOTIFY" },
        ],
    }));
    assert_eq!(
        err.to_string(),
        "linux.seccomp.listenerPath: must be set: linux.seccomp.syscalls[1].action is SCMP_ACT_NOTIFY"
    );

    let err = compile_err(json!({ "defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x" }));
    assert_eq!(
        err.to_string(),
        "linux.seccomp.listenerMetadata: must not be set without linux.seccomp.listenerPath"
    );
}

#[test]
fn notify_on_write_is_accepted_and_wants_a_listener() {
    let filter = Filter::compile(&seccomp(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "syscalls": [{ "names": ["write"], "action": "SCMP_ACT_NOTIFY" }],
    })))
    .expect("compiles");
    assert!(filter.wants_listener());
    assert!(mentions(&filter.pseudo_code().unwrap(), "write"));
}

#[test]
fn empty_names_are_refused() {
    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": [], "action": "SCMP_ACT_ERRNO" }],
    }));
    assert_eq!(
        err.to_string(),
        "linux.seccomp.syscalls[0].names: must name at least one syscall"
    );
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let filter = Filter::compile(&seccomp(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "syscalls": [
            { "names": ["no_such_syscall", "mkdir", "", "rmdir"], "action": "SCMP_ACT_ERRNO" },
            // Nothing of this rule is known: no listener is needed after all.
            { "names": ["also_not_a_syscall"], "action": "SCMP_ACT_NOTIFY" },
        ],
    })))
    .expect("unknown names do not fail the profile");
    assert!(!filter.wants_listener());
    let text = filter.pseudo_code().unwrap();
    assert!(mentions(&text, "mkdir"), "{text}");
    assert!(mentions(&text, "rmdir"), "{text}");
    assert!(!text.contains("no_such_syscall"), "{text}");
}

#[test]
fn rules_with_the_default_action_are_skipped() {
    // libseccomp refuses a rule whose action is the default one.
    let text = pfc(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["getpid"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 },
            // Same action, other errno: not the default, kept.
            { "names": ["chdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2 },
        ],
    }));
    assert!(mentions(&text, "getpid"), "{text}");
    assert!(!mentions(&text, "mkdir"), "{text}");
    assert!(!mentions(&text, "rmdir"), "{text}");
    assert!(mentions(&text, "chdir"), "{text}");
}

#[test]
fn comparisons_on_one_argument_become_alternatives() {
    // libseccomp cannot test an argument twice in one rule; compiling fails
    // unless such comparisons are split into rules of their own.
    let text = pfc(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["getpriority"],
            "action": "SCMP_ACT_ERRNO",
            "args": [
                { "index": 0, "value": 1, "op": "SCMP_CMP_EQ" },
                { "index": 0, "value": 2, "op": "SCMP_CMP_EQ" },
            ],
        }],
    }));
    assert!(mentions(&text, "getpriority"), "{text}");
}

#[test]
fn architectures_are_added() {
    let text = pfc(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [
            "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64",
            "SCMP_ARCH_ARM", "SCMP_ARCH_NATIVE",
        ],
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_ERRNO" }],
    }));
    for arch in ["x86_64", "x86", "x32", "aarch64", "arm"] {
        assert!(
            text.contains(&format!("# filter for arch {arch} (")),
            "{arch} missing: {text}"
        );
    }
}

#[test]
fn flags_are_accepted() {
    Filter::compile(&seccomp(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
    })))
    .expect("the kernel has these flags");
}

#[test]
fn wait_killable_recv_compiles_with_any_libseccomp() {
    // libseccomp before 2.6 cannot set the flag; the filter is then loaded
    // by hand (see the notify tests for its effect).
    let filter = Filter::compile(&seccomp(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
    })))
    .expect("the flag is supported");
    assert!(!filter.wants_listener());
}

#[test]
fn unknown_flags_actions_and_operators_are_refused_when_parsing() {
    // The spec's types name every value the runtime spec allows, so a value
    // outside them fails when config.json is parsed, naming the value.
    for (json, bad) in [
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"] }),
            "SECCOMP_FILTER_FLAG_BOGUS",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_EXPLODE" }),
            "SCMP_ACT_EXPLODE",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"] }),
            "SCMP_ARCH_VAX",
        ),
        (
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{
                    "names": ["read"],
                    "action": "SCMP_ACT_ERRNO",
                    "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_ABOUT" }],
                }],
            }),
            "SCMP_CMP_ABOUT",
        ),
    ] {
        let err = serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(json)
            .expect_err("unknown value is refused");
        assert!(err.to_string().contains(bad), "{err}");
    }
}

#[test]
fn container_default_profile_compiles() {
    let json = profile::default_profile();
    let allowed = json["syscalls"][0]["names"].as_array().unwrap().len();
    assert_eq!(allowed, profile::allowed_count());
    assert!(allowed >= 300, "{allowed} names");

    let filter = Filter::compile(&seccomp(json)).expect("default profile compiles");
    assert!(!filter.wants_listener());
    let text = filter.pseudo_code().unwrap();
    for name in ["read", "execve", "clone", "personality", "socket", "clone3"] {
        assert!(mentions(&text, name), "{name} missing");
    }
    for arch in ["x86_64", "x86", "x32"] {
        assert!(
            text.contains(&format!("# filter for arch {arch} (")),
            "{arch} missing"
        );
    }
    assert!(text.contains("action ERRNO(38);"), "clone3 answers ENOSYS");
}
