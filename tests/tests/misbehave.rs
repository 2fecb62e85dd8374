//! Workloads that misbehave: a fork bomb stays within its pids limit while
//! a neighbour container still runs; a process filling a size-limited tmpfs
//! gets ENOSPC and the host is unaffected; a container that ignores SIGTERM
//! survives `ctr task kill` and dies of SIGKILL. In a microVM, the bomb
//! meets the limit the guest kernel enforces and a full root filesystem is
//! the guest's ext4 image, of a fixed size on the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use strata_e2e::{assert_code, procfs, runtime_tests, Containerd, RunOptions};

const WAIT: Duration = Duration::from_secs(20);

/// The container's pids limit.
const PIDS_LIMIT: u64 = 64;

/// A limit the test itself puts on the whole namespace's pids cgroup
/// before the bomb starts: should the runtime fail to apply
/// [`PIDS_LIMIT`], the bomb stops here instead of exhausting the host's
/// PIDs (and the test fails, seeing more than `PIDS_LIMIT`).
const SAFETY_NET: u64 = 256;

/// How long the bomb is watched.
const BOMB_TIME: Duration = Duration::from_secs(3);

fn read_trimmed(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .trim()
        .to_owned()
}

/// The `max` counter of a v1 `pids.events`: how many forks the limit
/// refused.
fn refused_forks(cgroup: &Path) -> u64 {
    let events = read_trimmed(&cgroup.join("pids.events"));
    events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no max counter in pids.events: {events:?}"))
}

/// A fork bomb (a shell function that pipes itself into itself in the
/// background; `:` cannot be the name, as busybox's `:` builtin wins over
/// a function), started in one background child of the init, which then
/// becomes a `sleep` that never forks (a failed fork would end the init's
/// shell, and the container with it), under a pids limit of 64: the
/// container's pids cgroup never
/// counts more than 64 and refuses forks, and meanwhile a second container
/// starts and echoes. Both are then killed.
fn fork_bomb(c: &Containerd) {
    let id = "bomb";
    let net = Path::new("/sys/fs/cgroup/pids").join(c.namespace());
    fs::create_dir_all(&net).unwrap();
    fs::write(net.join("pids.max"), SAFETY_NET.to_string()).unwrap();

    let mut spec = c
        .spec_for(id, &["sh", "-c", "b() { b | b & }; b & exec sleep 1000"])
        .unwrap();
    spec["linux"]["resources"]["pids"] = json!({ "limit": PIDS_LIMIT });
    c.run_detached_with_spec(c.runtime(), id, &spec).unwrap();
    c.wait_status(id, "RUNNING", WAIT).unwrap();

    let cgroup: PathBuf = net.join(id);
    assert_eq!(
        read_trimmed(&cgroup.join("pids.max")),
        PIDS_LIMIT.to_string(),
        "the container's pids limit is not applied"
    );
    let mut peak = 0;
    let mut samples = 0;
    let start = Instant::now();
    let mut check = |peak: &mut u64| {
        let current: u64 = read_trimmed(&cgroup.join("pids.current")).parse().unwrap();
        *peak = (*peak).max(current);
        samples += 1;
        assert!(
            current <= PIDS_LIMIT,
            "the bomb has {current} processes, over the limit of {PIDS_LIMIT}"
        );
    };
    while start.elapsed() < BOMB_TIME {
        check(&mut peak);
        thread::sleep(Duration::from_millis(10));
    }

    // A neighbour on the same containerd still works.
    let out = c
        .run(&RunOptions::new("neighbour", ["echo", "neighbour-ok"]))
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "neighbour-ok\n", "{out}");
    check(&mut peak);

    let refused = refused_forks(&cgroup);
    assert!(
        refused > 0,
        "the bomb never hit its limit (peak {peak} processes over {samples} samples)"
    );
    eprintln!("fork bomb: peak {peak} processes, {refused} forks refused, {samples} samples");
    assert_eq!(c.remove(id).unwrap(), 137);
    assert!(!cgroup.exists(), "{} is left", cgroup.display());
}

/// Free space (bytes available to root) of the filesystem holding `p`.
fn free_bytes(p: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: an all-zero statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(3) with a valid path and out-parameter.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bfree * st.f_frsize
}

/// Writing 64 MiB into a tmpfs mounted with `size=4m` stops at 4 MiB with
/// "No space left on device"; the tmpfs is not visible on the host, and
/// the host's filesystems did not take the data.
fn tmpfs_full(c: &Containerd) {
    let id = "filler";
    let mut spec = c
        .spec_for(
            id,
            &[
                "sh",
                "-c",
                "dd if=/dev/zero of=/fill/big bs=1048576 count=64; echo rc=$?; stat -c %s /fill/big",
            ],
        )
        .unwrap();
    spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/fill",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "nodev", "size=4m"],
    }));
    let dirs = [
        PathBuf::from("/"),
        PathBuf::from("/tmp"),
        c.dir().to_owned(),
    ];
    let free_before: Vec<u64> = dirs.iter().map(|d| free_bytes(d)).collect();
    let out = c.run_with_spec(c.runtime(), id, &spec).unwrap();
    assert_code(&out, 0);
    assert!(out.stderr.contains("No space left on device"), "{out}");
    // dd reports its records on standard error; standard output has ours.
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_ne!(lines[0], "rc=0", "the write succeeded: {out}");
    let size: u64 = lines[1].parse().unwrap();
    assert!(
        size <= 4 << 20 && size > 0,
        "{size} bytes landed in a 4 MiB tmpfs"
    );
    // The data went nowhere on the host: no filesystem lost as much as
    // half of what was attempted (other tests may write a little meanwhile).
    for (d, before) in dirs.iter().zip(free_before) {
        let after = free_bytes(d);
        assert!(
            after + (32 << 20) > before,
            "{} lost {} bytes of free space",
            d.display(),
            before - after
        );
    }
    let leaked: Vec<_> = procfs::mounts()
        .into_iter()
        .filter(|m| m.mount_point.ends_with("fill"))
        .collect();
    assert!(leaked.is_empty(), "the tmpfs shows on the host: {leaked:?}");
}

/// A container whose init ignores SIGTERM: `ctr task kill` (SIGTERM) leaves
/// it running, SIGKILL then ends it with 137, the stop sequence a client
/// uses.
fn ignores_sigterm(c: &Containerd) {
    let id = "stubborn";
    c.run_detached(&RunOptions::new(
        id,
        [
            "sh",
            "-c",
            "trap '' TERM; touch /tmp/ready; while true; do sleep 1; done",
        ],
    ))
    .unwrap();
    let task = c.wait_status(id, "RUNNING", WAIT).unwrap();
    c.wait_exec_ok(id, &["test", "-e", "/tmp/ready"], WAIT)
        .unwrap();
    let init = procfs::read_proc(task.pid as i32).unwrap().key();

    c.kill(id, None, false).unwrap().ok().unwrap();
    thread::sleep(Duration::from_secs(2));
    let t = c.task(id).unwrap();
    assert_eq!(
        t.as_ref().map(|t| (t.status.as_str(), t.pid)),
        Some(("RUNNING", task.pid)),
        "SIGTERM ended a container that ignores it"
    );
    assert!(
        procfs::read_proc(init.0).is_some_and(|p| !p.is_zombie() && p.key() == init),
        "the init is gone after SIGTERM"
    );

    c.kill(id, Some("SIGKILL"), false).unwrap().ok().unwrap();
    c.wait_status(id, "STOPPED", WAIT).unwrap();
    assert_eq!(c.delete_task(id).unwrap(), 137);
    c.delete_container(id).unwrap();
}

runtime_tests!(interpose: fork_bomb);
runtime_tests!(every_class: tmpfs_full, ignores_sigterm);

/// How long a microVM container may take to boot and start.
const VM_WAIT: Duration = Duration::from_secs(90);

/// The value of `key` in `ctr tasks metrics` of task `id` (the usage of
/// the container's cgroup; on the microvm class, the guest's).
fn metric(c: &Containerd, id: &str, key: &str) -> u64 {
    let out = c.ctr(&["tasks", "metrics", id]).unwrap();
    assert_code(&out, 0);
    strata_e2e::ctr::metric(&out, key)
        .unwrap_or_else(|| panic!("no {key} in the metrics of {id}: {out}"))
}

/// The fork bomb of [`fork_bomb`] inside a microVM: the guest kernel holds
/// it to the container's pids limit (the task's metrics come from its
/// cgroup in the guest: the limit is set, the count reaches it and never
/// passes it), and meanwhile a neighbour container boots and echoes.
fn guest_fork_bomb(c: &Containerd) {
    let id = "vm-bomb";
    let mut spec = c
        .spec_for(id, &["sh", "-c", "b() { b | b & }; b & exec sleep 1000"])
        .unwrap();
    spec["linux"]["resources"]["pids"] = json!({ "limit": PIDS_LIMIT });
    c.run_detached_with_spec(c.runtime(), id, &spec).unwrap();
    c.wait_status(id, "RUNNING", VM_WAIT).unwrap();
    assert_eq!(metric(c, id, "pids.limit"), PIDS_LIMIT);

    let mut peak = 0;
    let check = |peak: &mut u64| {
        let current = metric(c, id, "pids.current");
        *peak = (*peak).max(current);
        assert!(
            current <= PIDS_LIMIT,
            "the bomb has {current} processes, over the limit of {PIDS_LIMIT}"
        );
    };
    let start = Instant::now();
    while start.elapsed() < 3 * BOMB_TIME {
        check(&mut peak);
        thread::sleep(Duration::from_millis(100));
    }
    let out = c
        .run(&RunOptions::new("vm-neighbour", ["echo", "neighbour-ok"]))
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "neighbour-ok\n", "{out}");
    check(&mut peak);
    eprintln!("fork bomb in a microVM: peak {peak} processes");
    assert!(
        peak + 4 >= PIDS_LIMIT,
        "the bomb never came near its limit of {PIDS_LIMIT} (peak {peak})"
    );
    assert_eq!(c.remove(id).unwrap(), 137);
}

/// A microVM container that fills its root filesystem gets ENOSPC from
/// the guest's ext4; the host holds no more than the disk image's fixed
/// size for it, and Delete removes the image.
fn guest_disk_full(c: &Containerd) {
    let id = "vm-filler";
    c.run_detached(&RunOptions::new(
        id,
        [
            "sh",
            "-c",
            // The report goes to a tmpfs: the full disk would take none of it.
            "dd if=/dev/zero of=/big bs=1048576 count=2048 2>/dev/shm/dd.err; \
             echo rc=$? > /dev/shm/done; exec sleep 1000",
        ],
    ))
    .unwrap();
    c.wait_status(id, "RUNNING", VM_WAIT).unwrap();
    c.wait_exec_ok(
        id,
        &["test", "-e", "/dev/shm/done"],
        Duration::from_secs(300),
    )
    .unwrap();
    let out = c
        .exec(id, "report", &["cat", "/dev/shm/done", "/dev/shm/dd.err"])
        .unwrap();
    assert_code(&out, 0);
    assert!(
        !out.stdout.starts_with("rc=0"),
        "the write succeeded: {out}"
    );
    assert!(out.stdout.contains("No space left on device"), "{out}");
    let image = c.task_dir().join(id).join("rootfs.img");
    let meta = fs::metadata(&image).unwrap();
    use std::os::unix::fs::MetadataExt;
    let held = meta.blocks() * 512;
    eprintln!(
        "disk full in a microVM: image {} bytes, {held} bytes held on the host",
        meta.len()
    );
    assert!(
        held <= meta.len() && meta.len() < 1 << 30,
        "the image holds {held} bytes of a {} byte disk",
        meta.len()
    );
    assert_eq!(c.remove(id).unwrap(), 137);
    assert!(!image.exists(), "{} is left", image.display());
}

#[test]
fn fork_bomb_in_a_microvm() {
    strata_e2e::run_case(strata_e2e::STRATA_MICROVM, guest_fork_bomb);
}

#[test]
fn disk_full_in_a_microvm() {
    strata_e2e::run_case(strata_e2e::STRATA_MICROVM, guest_disk_full);
}
