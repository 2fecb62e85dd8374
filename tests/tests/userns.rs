//! User namespaces: a container whose root is an unprivileged host uid.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use strata_e2e::{assert_code, procfs, run_case, runtime_tests, Containerd, STRATA};

/// The host uid and gid container root maps to.
const HOST_ID: u32 = 100_000;
/// How many ids are mapped.
const SIZE: u32 = 65_536;

/// A spec for `args` in a new user namespace mapping 0.. to `HOST_ID`..,
/// with `rootfs` as root.
fn userns_spec(c: &Containerd, id: &str, args: &[&str], rootfs: &Path) -> Value {
    let mut spec = c.spec_for(id, args).unwrap();
    spec["root"]["path"] = json!(rootfs);
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "user" }));
    let map = json!([{ "containerID": 0, "hostID": HOST_ID, "size": SIZE }]);
    spec["linux"]["uidMappings"] = map.clone();
    spec["linux"]["gidMappings"] = map;
    spec
}

/// Root inside is `HOST_ID` outside: `id -u` is 0, the uid map is the
/// spec's, a host directory owned by host root (0755) can be read but not
/// written, and the rootfs owned by `HOST_ID` is the container's own.
///
/// The rootfs and the host directory live in a directory of their own
/// (mode 0755, unlike the fixture's): the mapped root must be able to reach
/// them.
fn mapped_root(c: &Containerd) {
    let dir = tempfile::Builder::new()
        .prefix("se2e-userns-")
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let rootfs = dir.path().join("rootfs");
    strata_e2e::image::unpack_rootfs(&rootfs).unwrap();
    let owner = format!("{HOST_ID}:{HOST_ID}");
    let chown = Command::new("chown")
        .args(["-R", "-h", &owner])
        .arg(&rootfs)
        .output()
        .unwrap();
    assert!(chown.status.success(), "{chown:?}");
    let shared = dir.path().join("hostdir");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(shared.join("readme"), "host root's\n").unwrap();

    let script = "id -u; cat /proc/self/uid_map; cat /host/readme; \
                  touch /host/new; echo touch=$?; touch /root/mine && echo own-root-ok";
    let id = "userns";
    let mut spec = userns_spec(c, id, &["sh", "-c", script], &rootfs);
    spec["root"]["readonly"] = json!(false);
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "destination": "/host", "type": "bind", "source": shared, "options": ["rbind", "rw"] }));
    let out = c.run_with_spec(c.runtime(), id, &spec).unwrap();
    assert_code(&out, 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("0"), "{out}");
    assert_eq!(
        lines
            .get(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["0", "100000", "65536"]),
        "{out}"
    );
    assert_eq!(
        lines.get(2..),
        Some(&["host root's", "touch=1", "own-root-ok"][..]),
        "{out}"
    );
    assert!(out.stderr.contains("Permission denied"), "{out}");
    assert!(!shared.join("new").exists());
    // What the container created belongs to the mapped uid on the host.
    let meta = fs::metadata(rootfs.join("root/mine")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), HOST_ID);

    assert!(procfs::mounts_under(dir.path()).is_empty());
}

runtime_tests!(mapped_root);

/// A uid mapping whose host range overflows 32 bits fails Create naming
/// the field, and nothing is left behind.
#[test]
fn overflowing_mapping_strata() {
    run_case(STRATA, |c| {
        let rootfs = c.rootfs().unwrap();
        let mut spec = userns_spec(c, "overflow", &["true"], &rootfs);
        spec["linux"]["uidMappings"] =
            json!([{ "containerID": 0, "hostID": 4_294_967_295u32, "size": 2 }]);
        let out = c.run_with_spec(STRATA, "overflow", &spec).unwrap();
        assert_ne!(out.code, 0, "{out}");
        assert!(out.stderr.contains("linux.uidMappings[0]"), "{out}");
        assert!(c.containers().unwrap().is_empty());
        assert!(c.tasks().unwrap().is_empty());
    });
}
