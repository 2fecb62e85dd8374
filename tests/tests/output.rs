//! Output written just before a container exits is delivered in full.

use strata_e2e::{assert_code, runtime_tests, Containerd, RunOptions};

/// 1 MiB.
const SIZE: usize = 1 << 20;
/// How many containers in a row must deliver everything.
const RUNS: usize = 5;

/// A shell command writing `SIZE` bytes of `x` to `fd` and exiting right
/// after.
fn writer(fd: u8) -> String {
    format!("head -c {SIZE} /dev/zero | tr '\\000' x >&{fd}")
}

/// Checks that `text` is exactly `SIZE` bytes of `x`.
#[track_caller]
fn assert_all_x(what: &str, run: usize, text: &str) {
    assert_eq!(
        text.len(),
        SIZE,
        "run {run}: {what} delivered {} of {SIZE} bytes",
        text.len()
    );
    if let Some(i) = text.find(|ch| ch != 'x') {
        panic!("run {run}: {what} has a foreign byte at offset {i}");
    }
}

/// 1 MiB on stdout, then exit: all of it arrives, and nothing on stderr.
fn large_stdout_before_exit(c: &Containerd) {
    for run in 0..RUNS {
        let id = format!("stdout-{run}");
        let out = c
            .run(&RunOptions::new(&id, ["sh", "-c", &writer(1)]))
            .unwrap();
        assert_code(&out, 0);
        assert_all_x("stdout", run, &out.stdout);
        assert_eq!(out.stderr, "", "run {run}: unexpected stderr");
    }
}

/// 1 MiB on stderr, then exit: all of it arrives, and nothing on stdout.
fn large_stderr_before_exit(c: &Containerd) {
    for run in 0..RUNS {
        let id = format!("stderr-{run}");
        let out = c
            .run(&RunOptions::new(&id, ["sh", "-c", &writer(2)]))
            .unwrap();
        assert_code(&out, 0);
        assert_all_x("stderr", run, &out.stderr);
        assert_eq!(out.stdout, "", "run {run}: unexpected stdout");
    }
}

/// Both streams at once, with a non-zero exit code.
fn large_both_before_exit(c: &Containerd) {
    for run in 0..RUNS {
        let id = format!("both-{run}");
        let script = format!("{} & {}; wait; exit 3", writer(1), writer(2));
        let out = c
            .run(&RunOptions::new(&id, ["sh", "-c", &script]))
            .unwrap();
        assert_code(&out, 3);
        assert_all_x("stdout", run, &out.stdout);
        assert_all_x("stderr", run, &out.stderr);
    }
}

runtime_tests!(
    large_stdout_before_exit,
    large_stderr_before_exit,
    large_both_before_exit
);
