//! The microvm class through a real containerd: each container boots its
//! own guest kernel under QEMU, with Strata's agent as the guest's PID 1.
//!
//! Each VM takes seconds to boot under TCG, so the cases are few and each
//! checks several things on one containerd. They are skipped, saying why,
//! only when the guest kernel or initramfs is missing; `scripts/setup.sh`
//! (run by CI) makes them with `scripts/guest.sh`.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use strata_e2e::{assert_code, run_case, Containerd, RunOptions};

/// The runtime name that selects the microvm class by the shim's name.
const MICROVM: &str = "io.containerd.strata-microvm.v2";

/// Where scripts/guest.sh puts the guest files.
const DATA_DIR: &str = "/var/lib/strata/microvm";

/// The guest kernel's release, or `None` (with the reason printed) when the
/// guest files are missing.
fn guest_release() -> Option<String> {
    let dir = Path::new(DATA_DIR);
    for file in ["vmlinuz", "initramfs.img", "kernel-release"] {
        if !dir.join(file).exists() {
            println!(
                "skipped: {} is missing; run scripts/guest.sh",
                dir.join(file).display()
            );
            return None;
        }
    }
    let release = std::fs::read_to_string(dir.join("kernel-release")).unwrap();
    Some(release.trim().to_owned())
}

/// The running kernel's release.
fn host_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_owned()
}

/// Whether `pid` is a live QEMU process.
fn is_qemu(pid: u32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = state
        .rsplit(')')
        .next()
        .is_some_and(|s| s.trim_start().starts_with('Z'));
    comm.starts_with("qemu-system") && !zombie
}

/// Waits until `pid` is no live QEMU any more.
fn wait_qemu_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_qemu(pid) {
        assert!(Instant::now() < deadline, "QEMU {pid} is still running");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Foreground containers: output on both streams, the exit code, stdin,
/// and the guest's own kernel.
fn foreground(c: &Containerd) {
    let Some(release) = guest_release() else {
        return;
    };
    assert_ne!(
        release,
        host_release(),
        "the guest kernel must differ from the host's"
    );

    let started = Instant::now();
    let out = c
        .run(&RunOptions::new(
            "vm-echo",
            [
                "sh",
                "-c",
                "uname -r; echo pid $$; echo to-stderr >&2; exit 7",
            ],
        ))
        .unwrap();
    println!(
        "measured: `ctr run` of a microVM container, start to exit: {:?}",
        started.elapsed()
    );
    assert_code(&out, 7);
    // The container's init is PID 1 of its own PID namespace in the guest.
    assert_eq!(out.stdout, format!("{release}\npid 1\n"), "{out}");
    assert_eq!(out.stderr, "to-stderr\n", "{out}");

    println!(
        "measured: `ctr run` to the first output line: {:?}",
        first_output_after(c)
    );

    // The class's `[microvm]` table shapes the VM, and the container's
    // memory limit caps the guest's memory.
    let config = c
        .write_config(
            "shape.toml",
            "default_class = \"microvm\"\n[classes.microvm]\nbackend = \"microvm\"\n\
             [classes.microvm.microvm]\nvcpus = 2\nmemory_mib = 192\n",
        )
        .unwrap();
    let out = c
        .run(
            &RunOptions::new(
                "vm-shape",
                ["sh", "-c", "nproc; grep MemTotal /proc/meminfo"],
            )
            .runtime_config(&config)
            .memory_limit(96 << 20),
        )
        .unwrap();
    assert_code(&out, 0);
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("2"), "{out}");
    let total_kib: u64 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in {out}"));
    assert!(
        total_kib <= 96 << 10 && total_kib > 48 << 10,
        "guest memory {total_kib} KiB is not capped to the 96 MiB limit: {out}"
    );

    // A program that is not there fails Create, naming it; the VM goes away.
    let out = c
        .run(&RunOptions::new("vm-missing", ["no-such-program"]))
        .unwrap();
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr
            .contains("\"no-such-program\": executable file not found"),
        "{out}"
    );

    let out = c
        .run(&RunOptions::new("vm-stdin", ["head", "-n1"]).stdin("hello from the host\nmore\n"))
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "hello from the host\n", "{out}");
}

/// How long from `ctr run` until the container's first line of output
/// arrives: Create (disk image, boot, agent) plus Start.
fn first_output_after(c: &Containerd) -> Duration {
    let id = "vm-first-output";
    c.track(id);
    let mut command = c.ctr_command();
    command
        .args(["run", "--rm", "--fifo-dir"])
        .arg(c.fifo_dir())
        .args(["--runtime", MICROVM, c.image(), id, "echo", "first"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut ctr = command.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(ctr.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let elapsed = started.elapsed();
    assert!(ctr.wait().unwrap().success());
    assert_eq!(line, "first\n");
    elapsed
}

/// A detached container: exec with its own output and exit code, writes
/// that stay in the guest's disk, a signal that ends it, and a Delete that
/// takes the VM and its files away.
fn detached(c: &Containerd) {
    if guest_release().is_none() {
        return;
    }
    let id = "vm-detached";
    c.run_detached(&RunOptions::new(
        id,
        ["sh", "-c", "echo up > /started; exec sleep 600"],
    ))
    .unwrap();
    let task = c
        .wait_status(id, "RUNNING", Duration::from_secs(60))
        .unwrap();
    // The task's pid is its VM's QEMU.
    assert!(
        is_qemu(task.pid),
        "task pid {} is not a QEMU process",
        task.pid
    );
    // QEMU runs under its own seccomp filter (`-sandbox on`).
    let status = std::fs::read_to_string(format!("/proc/{}/status", task.pid)).unwrap();
    assert!(
        status.lines().any(|l| l == "Seccomp:\t2"),
        "QEMU {} has no seccomp filter",
        task.pid
    );
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or_default();
    println!("measured: QEMU of an idle microVM container, {rss}");
    c.wait_exec_ok(id, &["test", "-f", "/started"], Duration::from_secs(30))
        .unwrap();

    let out = c
        .exec(
            id,
            "e1",
            &[
                "sh",
                "-c",
                "echo exec-out; echo exec-err >&2; echo x > /written; exit 5",
            ],
        )
        .unwrap();
    assert_code(&out, 5);
    assert_eq!(out.stdout, "exec-out\n", "{out}");
    assert_eq!(out.stderr, "exec-err\n", "{out}");

    // The guest wrote to its own disk image, not to the host's rootfs.
    let bundle = c.task_dir().join(id);
    assert!(
        bundle.join("rootfs.img").exists(),
        "no disk image in {}",
        bundle.display()
    );
    for file in ["written", "started"] {
        assert!(
            !bundle.join("rootfs").join(file).exists(),
            "/{file} written in the guest appeared in the host's rootfs"
        );
    }
    // Statistics come from the guest: the one process left, memory in use.
    let out = c.ctr(&["tasks", "metrics", id]).unwrap();
    assert_code(&out, 0);
    let metric = |key: &str| {
        out.stdout.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(key)).then(|| words.next()?.parse::<u64>().ok())?
        })
    };
    assert_eq!(metric("pids.current"), Some(1), "{out}");
    assert!(metric("memory.usage").is_some_and(|m| m > 0), "{out}");
    // Pausing stops the whole VM; resuming lets it go on.
    c.ctr(&["tasks", "pause", id]).unwrap().ok().unwrap();
    c.wait_status(id, "PAUSED", Duration::from_secs(10))
        .unwrap();
    let state = std::fs::read_to_string(format!("/proc/{}/stat", task.pid)).unwrap();
    assert!(
        state
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('T'),
        "QEMU is not stopped while paused: {state}"
    );
    c.ctr(&["tasks", "resume", id]).unwrap().ok().unwrap();
    c.wait_status(id, "RUNNING", Duration::from_secs(10))
        .unwrap();
    let out = c.exec(id, "e2", &["cat", "/written"]).unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "x\n", "{out}");

    c.kill(id, Some("SIGKILL"), false).unwrap().ok().unwrap();
    c.wait_status(id, "STOPPED", Duration::from_secs(30))
        .unwrap();
    assert_eq!(c.delete_task(id).unwrap(), 137);
    wait_qemu_gone(task.pid);
    for file in ["rootfs.img", "agent.sock", "qemu.pid"] {
        assert!(
            !bundle.join(file).exists(),
            "{file} left in {}",
            bundle.display()
        );
    }
    c.delete_container(id).unwrap();
}

/// Sends SIGKILL to a process this test's containerd started.
fn sigkill(pid: u32) {
    // SAFETY: kill(2) by the PID of a QEMU or shim of this test's containerd.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
}

/// The entries of the fixture's fifo directory.
fn fifo_dirs(c: &Containerd) -> BTreeSet<PathBuf> {
    std::fs::read_dir(c.fifo_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// A VM that dies ends its task with 137 instead of hanging it; a shim that
/// dies leaves no VM behind, because the shim's `delete` ends it.
fn deaths(c: &Containerd) {
    if guest_release().is_none() {
        return;
    }
    let id = "vm-dies";
    c.run_detached(&RunOptions::new(id, ["sleep", "600"]))
        .unwrap();
    let task = c
        .wait_status(id, "RUNNING", Duration::from_secs(60))
        .unwrap();
    assert!(
        is_qemu(task.pid),
        "task pid {} is not a QEMU process",
        task.pid
    );
    sigkill(task.pid);
    c.wait_status(id, "STOPPED", Duration::from_secs(15))
        .unwrap();
    assert_eq!(c.delete_task(id).unwrap(), 137);
    c.delete_container(id).unwrap();

    let id = "vm-shim-dies";
    let fifos_before = fifo_dirs(c);
    c.run_detached(&RunOptions::new(id, ["sleep", "600"]))
        .unwrap();
    let task = c
        .wait_status(id, "RUNNING", Duration::from_secs(60))
        .unwrap();
    let shim = c.shim_server(id).expect("the shim server of the container");
    sigkill(shim.pid as u32);
    wait_qemu_gone(task.pid);
    let bundle = c.task_dir().join(id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while bundle.exists() {
        assert!(
            Instant::now() < deadline,
            "{} was not removed",
            bundle.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for args in [["tasks", "rm", id], ["containers", "rm", id]] {
        let out = c.ctr(&args).unwrap();
        assert!(out.success() || out.stderr.contains("not found"), "{out}");
    }
    // `ctr run -d` made I/O fifos that only `ctr task rm` of a live task removes.
    for dir in fifo_dirs(c).difference(&fifos_before) {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn foreground_containers() {
    run_case(MICROVM, foreground);
}

#[test]
fn detached_container() {
    run_case(MICROVM, detached);
}

#[test]
fn vm_and_shim_deaths() {
    run_case(MICROVM, deaths);
}
