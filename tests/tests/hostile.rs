//! Hand-written hostile specs given to `ctr run --config`: each is refused
//! at Create with a message that names the offending field, and leaves
//! nothing behind, on the native class and on the microvm class (whose
//! guest runs the same container code).

use serde_json::{json, Value};
use strata_e2e::Containerd;

/// Runs `spec` (a [`Containerd::spec_for`] spec edited by `edit`) as
/// container `id` with the fixture's runtime, and asserts that it fails with `field` in
/// its error output (the field's name, except where noted),
/// that containerd lists nothing afterwards and that the host is as before.
/// Returns the error output for further checks.
fn refused(c: &Containerd, id: &str, field: &str, edit: impl FnOnce(&mut Value)) -> String {
    let before = c.snapshot();
    let mut spec = c.spec_for(id, &["true"]).unwrap();
    edit(&mut spec);
    let out = c.run_with_spec(c.runtime(), id, &spec).unwrap();
    assert_ne!(out.code, 0, "{id}: the hostile spec was accepted: {out}");
    assert!(
        out.stderr.contains(field),
        "{id}: the error does not name {field}: {out}"
    );
    assert!(c.containers().unwrap().is_empty(), "{id}: container left");
    assert!(c.tasks().unwrap().is_empty(), "{id}: task left");
    c.assert_no_leftovers(&before);
    out.stderr
}

/// Puts `mount` second in the spec's mounts, so it is `mounts[1]`.
fn second_mount(spec: &mut Value, mount: Value) {
    spec["mounts"].as_array_mut().unwrap().insert(1, mount);
}

fn tmpfs_at(destination: &str) -> Value {
    json!({ "destination": destination, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"] })
}

/// Mount destinations must be absolute and must not climb.
fn mount_destinations(c: &Containerd) {
    refused(c, "relative-dest", "mounts[1].destination", |s| {
        second_mount(s, tmpfs_at("relative/dir"))
    });
    refused(c, "dotdot-dest", "mounts[1].destination", |s| {
        second_mount(s, tmpfs_at("/tmp/../../../etc"))
    });
}

/// A negative memory limit other than -1.
fn negative_memory_limit(c: &Containerd) {
    refused(c, "mem-neg", "linux.resources.memory.limit", |s| {
        s["linux"]["resources"]["memory"] = json!({ "limit": -5 });
    });
}

/// An rlimit whose soft limit exceeds its hard limit.
fn inverted_rlimit(c: &Containerd) {
    refused(c, "rlimit-inv", "process.rlimits[0]", |s| {
        s["process"]["rlimits"] = json!([{ "type": "RLIMIT_NOFILE", "soft": 10, "hard": 5 }]);
    });
}

/// A namespace type that does not exist. `ctr` and containerd pass it
/// through (to them a namespace type is any string); the shim is the first
/// to parse it.
fn unknown_namespace_type(c: &Containerd) {
    refused(c, "ns-bogus", "linux.namespaces", |s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "type": "bogus" }));
    });
}

/// A uid mapping whose host range overflows 32 bits.
fn overflowing_uid_map(c: &Containerd) {
    refused(c, "uidmap-overflow", "linux.uidMappings[0]", |s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "type": "user" }));
        s["linux"]["uidMappings"] =
            json!([{ "containerID": 0, "hostID": 4_294_967_295u32, "size": 2 }]);
        s["linux"]["gidMappings"] =
            json!([{ "containerID": 0, "hostID": 100_000, "size": 65_536 }]);
    });
}

/// A relative root path that climbs out of the bundle.
fn climbing_root_path(c: &Containerd) {
    refused(c, "root-climb", "root.path", |s| {
        s["root"] = json!({ "path": "../../etc", "readonly": true });
    });
}

/// One argument longer than exec takes (1 MiB; the kernel's limit for a
/// single string is 128 KiB).
fn huge_argument(c: &Containerd) {
    refused(c, "arg-huge", "process.args[1]", |s| {
        s["process"]["args"] = json!(["echo", "x".repeat(1 << 20)]);
    });
}

/// Arguments that are each acceptable but together exceed what exec takes
/// (a quarter of the 8 MiB stack limit): 30 × 100 KB.
fn too_many_arguments(c: &Containerd) {
    refused(c, "args-many", "process.args", |s| {
        let mut args = vec!["echo".to_owned()];
        args.extend(std::iter::repeat_n("y".repeat(100_000), 30));
        s["process"]["args"] = json!(args);
    });
}

/// 200 × 100 KB arguments: a 20 MB spec. Strata never sees this one:
/// `ctr`'s gRPC client refuses to send a container record over 16 MiB
/// ("trying to send message larger than max"), so that refusal is what is
/// asserted; [`too_many_arguments`] covers Strata's own check.
fn far_too_many_arguments(c: &Containerd) {
    let err = refused(c, "args-far-too-many", "larger than max", |s| {
        let mut args = vec!["echo".to_owned()];
        args.extend(std::iter::repeat_n("y".repeat(100_000), 200));
        s["process"]["args"] = json!(args);
    });
    assert!(err.contains("trying to send message"), "{err}");
}

/// Instantiates each case as a module with a test per class.
macro_rules! hostile {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[test]
                fn native() {
                    strata_e2e::run_case(strata_e2e::STRATA, super::$case)
                }
                #[test]
                fn microvm() {
                    strata_e2e::run_case(strata_e2e::STRATA_MICROVM, super::$case)
                }
            }
        )*
    };
}

hostile!(
    mount_destinations,
    negative_memory_limit,
    inverted_rlimit,
    unknown_namespace_type,
    overflowing_uid_map,
    climbing_root_path,
    huge_argument,
    too_many_arguments,
    far_too_many_arguments
);
