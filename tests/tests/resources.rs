//! Resource limits are enforced.

use strata_e2e::{assert_code, runtime_tests, Containerd, RunOptions};

const LIMIT: u64 = 32 * 1024 * 1024;

/// busybox `tail` keeps a newline-free stream in memory: 64 MiB of it does
/// not fit a 32 MiB limit, so the memory cgroup OOM-kills it (137); without
/// a limit, or with a stream that fits, it succeeds. The stream is bounded
/// so an unenforced limit fails the test instead of eating the host.
fn memory_limit(c: &Containerd) {
    let hog = |n: u64| format!("head -c {n} /dev/zero | tail >/dev/null");

    let out = c
        .run(&RunOptions::new("oom", ["sh", "-c", &hog(64 << 20)]).memory_limit(LIMIT))
        .unwrap();
    assert_code(&out, 137);

    let out = c
        .run(&RunOptions::new("fits", ["sh", "-c", &hog(4 << 20)]).memory_limit(LIMIT))
        .unwrap();
    assert_code(&out, 0);

    let out = c
        .run(&RunOptions::new("unlimited", ["sh", "-c", &hog(64 << 20)]))
        .unwrap();
    assert_code(&out, 0);
}

runtime_tests!(memory_limit);
