//! End-to-end tests of Strata against a real containerd.
//!
//! Each test starts its own containerd ([`Containerd`]) with a private root,
//! state and sockets under `/tmp/se2e-*`, imports a busybox image built from
//! the host's `/bin/busybox` ([`image`]), drives it with `ctr` ([`ctr`]),
//! and checks afterwards that nothing of it is left on the host
//! ([`leftovers`]). Every test body is written once against a runtime name
//! and instantiated twice with [`runtime_tests!`]: with runc
//! (`io.containerd.runc.v2`, the reference that proves the harness and the
//! test right) and with Strata (`io.containerd.strata.v2`, the product).
//!
//! # Running
//!
//! As root, with containerd 1.6, runc and busybox-static installed, and the
//! shim built first (the harness does not build it; it fails naming the
//! missing path):
//!
//! ```text
//! cd /work/main
//! cargo build -p strata-shim
//! cargo test -p strata-e2e -- --test-threads=2
//! ```
//!
//! (`cargo test --no-fail-fast ...` goes on to the other test files after a
//! failing one.) Each test runs its own containerd, so tests run in
//! parallel; the whole suite takes well under a minute here.
//!
//! Only the runc variants: `cargo test -p strata-e2e -- runc`; only Strata:
//! `-- strata`. `STRATA_SHIM=/path/to/containerd-shim-strata-v2` overrides
//! where the shim is taken from. A failing test prints the tail of its
//! containerd's debug log and what its cleanup had to remove.
//!
//! The image builder is also a binary, for scripts:
//! `cargo run -p strata-e2e --bin build-busybox-image -- OUT.tar [NAME]`.

pub mod command;
pub mod containerd;
pub mod cri;
pub mod ctr;
pub mod events;
pub mod image;
pub mod leftovers;
pub mod procfs;

pub use command::CmdOutput;
pub use containerd::{Containerd, ContainerdOptions};
pub use ctr::{RunOptions, TaskInfo};
pub use events::{Event, EventWatcher};
pub use leftovers::HostSnapshot;

/// containerd's runc shim: the reference runtime.
pub const RUNC: &str = "io.containerd.runc.v2";

/// Strata's shim under its default name.
pub const STRATA: &str = "io.containerd.strata.v2";

/// Strata's shim under the name that selects the embedded `interpose` class.
pub const STRATA_INTERPOSE: &str = "io.containerd.strata-interpose.v2";

/// Strata's shim under the name that selects the embedded `microvm` class:
/// each container in a VM of its own (QEMU under TCG on a host without
/// hardware virtualization).
pub const STRATA_MICROVM: &str = "io.containerd.strata-microvm.v2";

/// Annotation that selects Strata's runtime class.
pub const RUNTIME_CLASS_ANNOTATION: &str = "io.strata.runtime-class";

/// Runs one test case: starts a containerd for `runtime`, records the host
/// state, runs `body`, and asserts that nothing was left behind. The
/// fixture is torn down even if `body` panics.
pub fn run_case(runtime: &str, body: impl FnOnce(&Containerd)) {
    let c = match Containerd::start(runtime) {
        Ok(c) => c,
        Err(e) => panic!("could not start containerd for {runtime}: {e:#}"),
    };
    let before = c.snapshot();
    body(&c);
    c.assert_no_leftovers(&before);
}

/// Asserts that a command's exit code is `code`, showing its output if not.
#[track_caller]
pub fn assert_code(out: &CmdOutput, code: i32) {
    assert_eq!(out.code, code, "unexpected exit code: {out}");
}

/// Instantiates each named case (`fn case(c: &Containerd)`) as a module
/// with two tests: `runc` and `strata`; with `interpose:` before the list,
/// a third, `interpose`, runs the case on Strata's interpose class; with
/// `every_class:`, a fourth, `microvm`, runs it on the microvm class too.
///
/// ```ignore
/// fn echo(c: &Containerd) { /* ... */ }
/// strata_e2e::runtime_tests!(echo);
/// // gives tests `echo::runc` and `echo::strata`
/// strata_e2e::runtime_tests!(interpose: cat);
/// // gives tests `cat::runc`, `cat::strata` and `cat::interpose`
/// ```
#[macro_export]
macro_rules! runtime_tests {
    (every_class: $($case:ident),* $(,)?) => {
        $(
            mod $case {
                $crate::runtime_test!($case, runc, RUNC);
                $crate::runtime_test!($case, strata, STRATA);
                $crate::runtime_test!($case, interpose, STRATA_INTERPOSE);
                $crate::runtime_test!($case, microvm, STRATA_MICROVM);
            }
        )*
    };
    (interpose: $($case:ident),* $(,)?) => {
        $(
            mod $case {
                $crate::runtime_test!($case, runc, RUNC);
                $crate::runtime_test!($case, strata, STRATA);
                $crate::runtime_test!($case, interpose, STRATA_INTERPOSE);
            }
        )*
    };
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                $crate::runtime_test!($case, runc, RUNC);
                $crate::runtime_test!($case, strata, STRATA);
            }
        )*
    };
}

/// One test of [`runtime_tests!`]: `case` on the runtime named by the
/// crate constant `runtime`.
#[doc(hidden)]
#[macro_export]
macro_rules! runtime_test {
    ($case:ident, $name:ident, $runtime:ident) => {
        #[test]
        fn $name() {
            $crate::run_case($crate::$runtime, super::$case)
        }
    };
}
