//! Foreground containers: output, exit codes, stdin, PID 1, hostname and
//! the image's files.

use strata_e2e::{assert_code, runtime_tests, Containerd, RunOptions};

/// stdout and stderr arrive separately and intact.
fn echo_output(c: &Containerd) {
    let out = c
        .run(&RunOptions::new(
            "echo",
            ["sh", "-c", "echo to-stdout; echo to-stderr >&2"],
        ))
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "to-stdout\n", "{out}");
    assert_eq!(out.stderr, "to-stderr\n", "{out}");
}

/// The container's exit code is `ctr run`'s exit code.
fn exit_codes(c: &Containerd) {
    let out = c.run(&RunOptions::new("exit0", ["true"])).unwrap();
    assert_code(&out, 0);
    let out = c
        .run(&RunOptions::new("exit7", ["sh", "-c", "exit 7"]))
        .unwrap();
    assert_code(&out, 7);
}

/// Standard input reaches the container.
fn stdin_piped(c: &Containerd) {
    let out = c
        .run(&RunOptions::new("stdin", ["head", "-n1"]).stdin("hello\n"))
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "hello\n", "{out}");
}

/// The container's init is PID 1 of its own PID namespace.
fn pid_one(c: &Containerd) {
    let out = c
        .run(&RunOptions::new("pid1", ["sh", "-c", "echo $$"]))
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout.trim(), "1", "{out}");
}

/// The hostname of the spec is the container's hostname, and the host's is
/// untouched. `ctr run` 1.6 has no `--hostname`, so this runs a full spec.
fn hostname(c: &Containerd) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let want = "strata-e2e-host";
    assert_ne!(host.trim(), want);
    let mut spec = c
        .spec_for(
            "hostname",
            &["sh", "-c", "hostname; cat /proc/sys/kernel/hostname"],
        )
        .unwrap();
    spec["hostname"] = serde_json::json!(want);
    let out = c.run_with_spec(c.runtime(), "hostname", &spec).unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, format!("{want}\n{want}\n"), "{out}");
    let after = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(host, after, "the host's hostname changed");

    // Without a hostname in the spec the container still has one.
    let out = c
        .run(&RunOptions::new("hostname-default", ["hostname"]))
        .unwrap();
    assert_code(&out, 0);
    assert!(!out.stdout.trim().is_empty(), "{out}");
}

/// Files come from the image's rootfs.
fn image_files(c: &Containerd) {
    let out = c
        .run(&RunOptions::new("passwd", ["cat", "/etc/passwd"]))
        .unwrap();
    assert_code(&out, 0);
    assert!(out.stdout.contains("root:x:0:0:"), "{out}");
    assert!(out.stdout.contains("nobody:"), "{out}");
}

/// `--env` reaches the process, on top of the image's `PATH`.
fn environment(c: &Containerd) {
    let out = c
        .run(&RunOptions::new("env", ["sh", "-c", "echo $GREETING:$PATH"]).env("GREETING=hi"))
        .unwrap();
    assert_code(&out, 0);
    assert!(out.stdout.starts_with("hi:"), "{out}");
    assert!(out.stdout.contains("/bin"), "{out}");
}

runtime_tests!(
    interpose:
    echo_output,
    exit_codes,
    stdin_piped,
    pid_one,
    hostname,
    image_files,
    environment,
);
