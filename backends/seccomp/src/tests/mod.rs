//! Tests: compile checks in `compile`, filters loaded into forked children
//! in `load`, notification round trips in `notify`.

mod child;
mod compile;
mod load;
mod notify;
mod profile;

use oci_spec::runtime::LinuxSeccomp;

/// Parses a `linux.seccomp` object written as JSON.
fn seccomp(json: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(json).expect("test profile parses")
}
