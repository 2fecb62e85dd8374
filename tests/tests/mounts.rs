//! The container's filesystem view: masked and read-only paths, a read-only
//! root, tmpfs options, bind mounts and their propagation, and image
//! symlinks that try to redirect mounts onto the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use strata_e2e::{assert_code, procfs, runtime_tests, CmdOutput, Containerd, RunOptions};

const WAIT: Duration = Duration::from_secs(20);

/// A spec from [`Containerd::spec_for`] running `sh -c script`, with
/// `mounts` appended to the default ones.
fn spec_with(c: &Containerd, id: &str, script: &str, mounts: &[Value]) -> Value {
    let mut spec = c.spec_for(id, &["sh", "-c", script]).unwrap();
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .extend(mounts.iter().cloned());
    spec
}

fn run_with(c: &Containerd, id: &str, script: &str, mounts: &[Value]) -> CmdOutput {
    let spec = spec_with(c, id, script, mounts);
    c.run_with_spec(c.runtime(), id, &spec).unwrap()
}

fn bind(source: &Path, destination: &str, options: &[&str]) -> Value {
    json!({ "destination": destination, "type": "bind", "source": source, "options": options })
}

fn tmpfs(destination: &str, options: &[&str]) -> Value {
    json!({ "destination": destination, "type": "tmpfs", "source": "tmpfs", "options": options })
}

/// Runs a host command, panicking with its output if it fails.
fn host(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `maskedPaths`: a masked file reads as `/dev/null` (containerd's default
/// `/proc/timer_list`, as this kernel has no `/proc/kcore`, and `/etc/passwd` of the image when the spec says so), a
/// masked directory looks empty.
fn masked_paths(c: &Containerd) {
    let host_firmware = fs::read_dir("/sys/firmware")
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        host_firmware > 0,
        "the host's /sys/firmware is empty: nothing to mask"
    );
    let host_timers = fs::read("/proc/timer_list").unwrap();
    assert!(
        !host_timers.is_empty(),
        "the host's /proc/timer_list is empty"
    );
    let script =
        "wc -c < /proc/timer_list; stat -c %t:%T /proc/timer_list; ls -A /sys/firmware | wc -l";
    let out = c
        .run(&RunOptions::new("masked", ["sh", "-c", script]))
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "0\n1:3\n0\n", "{out}");

    let mut spec = c
        .spec_for(
            "masked-spec",
            &["sh", "-c", "wc -c < /etc/passwd; cat /etc/group"],
        )
        .unwrap();
    spec["linux"]["maskedPaths"] = json!(["/etc/passwd"]);
    let out = c.run_with_spec(c.runtime(), "masked-spec", &spec).unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "0\nroot:x:0:\nnogroup:x:65534:\n", "{out}");
}

/// `readonlyPaths`: containerd's default `/proc/sys` cannot be written even
/// where the container has its own namespace (the UTS hostname), and a path
/// the spec adds (the `/run` tmpfs) becomes read-only too.
fn readonly_paths(c: &Containerd) {
    let out = c
        .run(&RunOptions::new(
            "ro-proc",
            ["sh", "-c", "echo other > /proc/sys/kernel/hostname"],
        ))
        .unwrap();
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");

    let script = "touch /run/x && echo wrote";
    let out = run_with(c, "rw-run", script, &[]);
    assert_code(&out, 0);
    let mut spec = spec_with(c, "ro-run", script, &[]);
    spec["linux"]["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/run"));
    let out = c.run_with_spec(c.runtime(), "ro-run", &spec).unwrap();
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
}

/// `root.readonly` (`ctr run --read-only`, and a full spec): the root
/// cannot be written; without it, it can.
fn root_readonly(c: &Containerd) {
    let touch = ["sh", "-c", "touch /x && echo wrote"];
    let out = c.run(&RunOptions::new("rootrw", touch)).unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "wrote\n", "{out}");

    let out = c
        .run(&RunOptions::new("rootro", touch).flag("--read-only"))
        .unwrap();
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");

    let mut spec = c.spec_for("rootro-spec", &touch).unwrap();
    assert_eq!(spec["root"]["readonly"], json!(true));
    spec["root"]["readonly"] = json!(true);
    let out = c.run_with_spec(c.runtime(), "rootro-spec", &spec).unwrap();
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
}

/// A tmpfs with `size=1m,mode=1777`: that mode, room for half a MiB but not
/// for 2 MiB.
fn tmpfs_options(c: &Containerd) {
    let script = "stat -c %a /scratch; \
                  dd if=/dev/zero of=/scratch/small bs=1024 count=512 2>/dev/null && echo small-ok; \
                  dd if=/dev/zero of=/scratch/big bs=1024 count=2048 && echo big-ok";
    let out = run_with(
        c,
        "tmpfs",
        script,
        &[tmpfs("/scratch", &["size=1m", "mode=1777"])],
    );
    assert_eq!(out.stdout, "1777\nsmall-ok\n", "{out}");
    assert!(out.stderr.contains("No space left on device"), "{out}");
}

/// A read-only bind mount of a host directory can be read, not written;
/// a read-write one writes through to the host.
fn bind_mounts(c: &Containerd) {
    let dir = c.dir().join("bind-src");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("hello"), "from the host\n").unwrap();
    let out = run_with(
        c,
        "bindro",
        "cat /hostro/hello; touch /hostro/new",
        &[bind(&dir, "/hostro", &["rbind", "ro"])],
    );
    assert_eq!(out.stdout, "from the host\n", "{out}");
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!dir.join("new").exists());

    let out = run_with(
        c,
        "bindrw",
        "echo from the container > /hostrw/new",
        &[bind(&dir, "/hostrw", &["rbind", "rw"])],
    );
    assert_code(&out, 0);
    assert_eq!(
        fs::read_to_string(dir.join("new")).unwrap(),
        "from the container\n"
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// Nothing can be executed from a `noexec` tmpfs; the same copy runs from a
/// tmpfs without it.
fn noexec_tmpfs(c: &Containerd) {
    let script = "for d in /ex /nx; do cp /bin/busybox $d/true && chmod 755 $d/true; done; \
                  /ex/true && echo ex-ran; /nx/true; echo nx=$?";
    let out = run_with(
        c,
        "noexec",
        script,
        &[
            tmpfs("/ex", &["mode=755"]),
            tmpfs("/nx", &["noexec", "mode=755"]),
        ],
    );
    assert_code(&out, 0);
    assert_eq!(out.stdout, "ex-ran\nnx=126\n", "{out}");
    assert!(out.stderr.contains("/nx/true: Permission denied"), "{out}");
}

/// Host mounts made by [`rbind_rprivate`], unmounted in reverse on drop.
struct HostMounts(Vec<PathBuf>);

impl HostMounts {
    fn mount(&mut self, args: &[&str], target: &Path) {
        let mut all = vec!["mount"];
        all.extend(args);
        let t = target.display().to_string();
        all.push(&t);
        host(&all);
        self.0.push(target.to_owned());
    }
}

impl Drop for HostMounts {
    fn drop(&mut self) {
        for m in self.0.drain(..).rev() {
            let _ = Command::new("umount").arg(&m).output();
        }
    }
}

/// `rbind` carries the source's submounts along (a plain `bind` does not);
/// `rprivate` cuts the container's copy off from the host's later mounts,
/// which an `rslave` copy of the same shared source receives.
fn rbind_rprivate(c: &Containerd) {
    let src = c.dir().join("rbind-src");
    fs::create_dir_all(&src).unwrap();
    let mut mounts = HostMounts(Vec::new());
    // A shared source, so propagation has something to carry.
    mounts.mount(&["--bind", &src.display().to_string()], &src);
    host(&["mount", "--make-shared", &src.display().to_string()]);
    let sub = src.join("sub");
    let late = src.join("late");
    fs::create_dir_all(&sub).unwrap();
    fs::create_dir_all(&late).unwrap();
    mounts.mount(&["-t", "tmpfs", "tmpfs"], &sub);
    fs::write(sub.join("inner"), "submount\n").unwrap();

    let id = "rbind";
    let spec = spec_with(
        c,
        id,
        "sleep 1000",
        &[
            bind(&src, "/rb", &["rbind", "rprivate"]),
            bind(&src, "/rs", &["rbind", "rslave"]),
            bind(&src, "/b", &["bind"]),
        ],
    );
    c.run_detached_with_spec(c.runtime(), id, &spec).unwrap();
    c.wait_status(id, "RUNNING", WAIT).unwrap();
    let out = c
        .exec(
            id,
            "sub",
            &[
                "sh",
                "-c",
                "cat /rb/sub/inner /rs/sub/inner; ls -A /b/sub | wc -l",
            ],
        )
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "submount\nsubmount\n0\n", "{out}");

    // A mount the host makes now reaches the rslave copy only.
    mounts.mount(&["-t", "tmpfs", "tmpfs"], &late);
    fs::write(late.join("f"), "late\n").unwrap();
    let out = c
        .exec(
            id,
            "late",
            &["sh", "-c", "ls -A /rb/late | wc -l; cat /rs/late/f"],
        )
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "0\nlate\n", "{out}");

    assert_eq!(c.remove(id).unwrap(), 137);
    drop(mounts);
    assert!(procfs::mounts_under(&src).is_empty());
    fs::remove_dir_all(&src).unwrap();
}

/// Removes a host path the container may have created through a symlink,
/// whatever happens, so a failing run leaves nothing.
struct HostPathGuard(PathBuf);

impl Drop for HostPathGuard {
    fn drop(&mut self) {
        for m in procfs::mounts_under(&self.0).iter().rev() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&m.mount_point)
                .output();
        }
        let _ = fs::remove_dir_all(&self.0);
        let _ = fs::remove_file(&self.0);
    }
}

/// Asserts that `path` does not exist on the host and nothing is mounted
/// at or below it.
#[track_caller]
fn assert_untouched(path: &Path, out: &CmdOutput) {
    assert!(
        fs::symlink_metadata(path).is_err(),
        "{} was created on the host: {out}",
        path.display()
    );
    let mounted = procfs::mounts_under(path);
    assert!(
        mounted.is_empty(),
        "mounted on the host: {mounted:?}: {out}"
    );
}

/// A copy of the image's rootfs in the fixture directory whose `link` is a
/// symlink to the absolute host path `target`.
fn rootfs_with_link(c: &Containerd, name: &str, link: &str, target: &Path) -> PathBuf {
    let rootfs = c.dir().join(name);
    strata_e2e::image::unpack_rootfs(&rootfs).unwrap();
    let at = rootfs.join(link);
    if at.is_dir() {
        fs::remove_dir(&at).unwrap();
    }
    std::os::unix::fs::symlink(target, &at).unwrap();
    rootfs
}

/// An image whose `/proc` is a symlink to an absolute host path that does
/// not exist, and one whose `/data` (the target of a tmpfs mount) is: the
/// host paths are neither created nor mounted on, nor is anything left
/// mounted in the rootfs. A `/data` tmpfs lands inside the rootfs and the
/// container sees it. runc refuses the `/proc` case ("filesystem "proc"
/// must be mounted on ordinary directory"); Strata mounts proc inside the
/// rootfs; both are safe, so there only the host is checked, and that a
/// container that ran had its `/proc`.
fn symlink_escape(c: &Containerd) {
    let short = if c.runtime() == strata_e2e::RUNC {
        "runc"
    } else {
        "strata"
    };
    let evil = PathBuf::from(format!("/tmp/strata-evil-{}-{short}", std::process::id()));
    let evil2 = PathBuf::from(format!("{}-2", evil.display()));
    let _guards = [HostPathGuard(evil.clone()), HostPathGuard(evil2.clone())];
    assert!(fs::symlink_metadata(&evil).is_err() && fs::symlink_metadata(&evil2).is_err());

    let rootfs = rootfs_with_link(c, "evil-proc-rootfs", "proc", &evil);
    let mut spec = c
        .spec_for(
            "evil-proc",
            &["sh", "-c", "test -e /proc/self/status && echo proc-ok"],
        )
        .unwrap();
    spec["root"]["path"] = json!(rootfs);
    let out = c.run_with_spec(c.runtime(), "evil-proc", &spec).unwrap();
    assert_untouched(&evil, &out);
    if out.code == 0 {
        assert_eq!(out.stdout, "proc-ok\n", "{out}");
    }
    assert!(
        procfs::mounts_under(&rootfs).is_empty(),
        "{:?}",
        procfs::mounts_under(&rootfs)
    );

    let rootfs = rootfs_with_link(c, "evil-data-rootfs", "data", &evil2);
    let mut spec = spec_with(
        c,
        "evil-data",
        "echo in-tmpfs > /data/f && cat /data/f && stat -f -c %T /data/",
        &[tmpfs("/data", &["mode=755"])],
    );
    spec["root"]["path"] = json!(rootfs);
    let out = c.run_with_spec(c.runtime(), "evil-data", &spec).unwrap();
    assert_untouched(&evil2, &out);
    assert_code(&out, 0);
    assert_eq!(out.stdout, "in-tmpfs\ntmpfs\n", "{out}");
    assert!(
        procfs::mounts_under(&rootfs).is_empty(),
        "{:?}",
        procfs::mounts_under(&rootfs)
    );
}

runtime_tests!(
    masked_paths,
    readonly_paths,
    root_readonly,
    tmpfs_options,
    bind_mounts,
    noexec_tmpfs,
    rbind_rprivate,
    symlink_escape,
);
