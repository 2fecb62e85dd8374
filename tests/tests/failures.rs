//! Failing creates report why and leave nothing behind.

use strata_e2e::{
    run_case, runtime_tests, Containerd, RunOptions, RUNTIME_CLASS_ANNOTATION, STRATA,
};

/// A command that does not exist fails the create, names the command, and
/// `ctr run --rm` cleans the container up.
fn missing_command(c: &Containerd) {
    let out = c
        .run(&RunOptions::new("nocmd", ["/no/such/command"]))
        .unwrap();
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("/no/such/command"), "{out}");
    assert!(c.containers().unwrap().is_empty());
    assert!(c.tasks().unwrap().is_empty());
}

runtime_tests!(missing_command);

/// An unknown runtime class fails Create with an error that names it.
#[test]
fn bad_runtime_class_strata() {
    run_case(STRATA, |c| {
        let out = c
            .run(
                &RunOptions::new("badclass", ["true"]).annotation(RUNTIME_CLASS_ANNOTATION, "nope"),
            )
            .unwrap();
        assert_ne!(out.code, 0, "{out}");
        assert!(
            out.stderr.contains("nope"),
            "error does not name the class: {out}"
        );
        assert!(c.containers().unwrap().is_empty());
        assert!(c.tasks().unwrap().is_empty());
    });
}
