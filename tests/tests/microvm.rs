//! The microvm class through a real containerd: each container boots its
//! own guest kernel, with Strata's agent as the guest's PID 1.
//!
//! Each case runs twice: on the monitor `hypervisor = "auto"` picks for the
//! class (QEMU with TCG on a host without hardware virtualization), and on
//! the built-in VMM through a class configuration that names it. Each VM
//! takes seconds to boot under TCG, so the cases are few and each checks
//! several things on one containerd. They are skipped, saying why, when
//! the guest kernel or initramfs is missing (`scripts/setup.sh`, run by CI,
//! makes them with `scripts/guest.sh`) and, for the built-in VMM, when the
//! host cannot run it.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use strata_e2e::ctr::metric;
use strata_e2e::{assert_code, run_case, Containerd, RunOptions};
use strata_vmm::check::check;

/// The runtime name that selects the microvm class by the shim's name.
const MICROVM: &str = "io.containerd.strata-microvm.v2";

/// Where scripts/guest.sh puts the guest files.
const DATA_DIR: &str = "/var/lib/strata/microvm";

/// The monitor that runs a suite's VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Monitor {
    /// QEMU's microvm machine.
    Qemu,
    /// Strata's built-in VMM: the shim re-executed with `vmm`.
    Builtin,
}

impl Monitor {
    /// The monitor `hypervisor = "auto"` picks on this host.
    fn auto() -> Monitor {
        if check().is_ok() {
            Monitor::Builtin
        } else {
            Monitor::Qemu
        }
    }

    /// The kernel file it boots by default.
    fn kernel(self) -> &'static str {
        match self {
            Monitor::Qemu => "vmlinuz",
            Monitor::Builtin => "vmlinux",
        }
    }
}

/// How a suite runs its containers: the monitor its VMs run on, and the
/// class configuration that chose it (none: the shim's default, `auto`).
struct Vms<'a> {
    c: &'a Containerd,
    monitor: Monitor,
    /// The value of `hypervisor` in every class configuration written.
    hypervisor: &'static str,
    config: Option<PathBuf>,
}

impl<'a> Vms<'a> {
    /// The suite on the monitor `auto` picks, without a configuration file.
    fn auto(c: &'a Containerd) -> Vms<'a> {
        Vms {
            c,
            monitor: Monitor::auto(),
            hypervisor: "auto",
            config: None,
        }
    }

    /// The suite on the built-in VMM, or `None` (with the reason printed)
    /// when this host cannot run it.
    fn builtin(c: &'a Containerd) -> Option<Vms<'a>> {
        if let Err(reason) = check() {
            println!("skipped: the built-in VMM cannot run here: {reason}");
            return None;
        }
        let mut vms = Vms {
            c,
            monitor: Monitor::Builtin,
            hypervisor: "builtin",
            config: None,
        };
        vms.config = Some(vms.write_config("builtin.toml", ""));
        Some(vms)
    }

    /// Writes a configuration whose `microvm` class (the one the runtime
    /// name selects) runs on this suite's monitor, shaped by `extra` lines.
    fn write_config(&self, name: &str, extra: &str) -> PathBuf {
        self.c
            .write_config(
                name,
                &format!(
                    "default_class = \"microvm\"\n[classes.microvm]\nbackend = \"microvm\"\n\
                     [classes.microvm.microvm]\nhypervisor = \"{}\"\n{extra}",
                    self.hypervisor
                ),
            )
            .unwrap()
    }

    /// Options for `ctr run` in this suite.
    fn opts<I, S>(&self, id: &str, args: I) -> RunOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let opts = RunOptions::new(id, args);
        match &self.config {
            Some(config) => opts.runtime_config(config),
            None => opts,
        }
    }

    /// Whether `pid` is a live process of this suite's monitor.
    fn is_vmm(&self, pid: u32) -> bool {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        let ours = match self.monitor {
            Monitor::Qemu => std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .starts_with("qemu-system"),
            Monitor::Builtin => {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.get(1) == Some(&&b"vmm"[..]) && args.contains(&&b"--console-socket"[..])
            }
        };
        ours && !zombie
    }

    /// Waits until `pid` is no live process of the monitor any more.
    fn wait_vmm_gone(&self, pid: u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.is_vmm(pid) {
            assert!(
                Instant::now() < deadline,
                "{:?} VMM {pid} is still running",
                self.monitor
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The guest kernel's release, or `None` (with the reason printed) when
    /// the guest files of this suite's monitor are missing.
    fn guest_release(&self) -> Option<String> {
        guest_release(self.monitor.kernel())
    }
}

/// The guest kernel's release, or `None` (with the reason printed) when the
/// guest files are missing.
fn guest_release(kernel: &str) -> Option<String> {
    let dir = Path::new(DATA_DIR);
    for file in [kernel, "initramfs.img", "kernel-release"] {
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

/// Foreground containers: output on both streams, the exit code, stdin,
/// and the guest's own kernel.
fn foreground(vms: &Vms) {
    let c = vms.c;
    let Some(release) = vms.guest_release() else {
        return;
    };
    assert_ne!(
        release,
        host_release(),
        "the guest kernel must differ from the host's"
    );

    let started = Instant::now();
    let out = c
        .run(&vms.opts(
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
        first_output_after(vms)
    );

    // The class's `[microvm]` table shapes the VM, and the container's
    // memory limit caps the guest's memory.
    let config = vms.write_config("shape.toml", "vcpus = 2\nmemory_mib = 192\n");
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
    let out = c.run(&vms.opts("vm-missing", ["no-such-program"])).unwrap();
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr
            .contains("\"no-such-program\": executable file not found"),
        "{out}"
    );

    let out = c
        .run(
            &vms.opts("vm-stdin", ["head", "-n1"])
                .stdin("hello from the host\nmore\n"),
        )
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "hello from the host\n", "{out}");
}

/// How long from `ctr run` until the container's first line of output
/// arrives: Create (disk image, boot, agent) plus Start.
fn first_output_after(vms: &Vms) -> Duration {
    let c = vms.c;
    let id = "vm-first-output";
    c.track(id);
    let mut command = c.ctr_command();
    command
        .args(["run", "--rm", "--fifo-dir"])
        .arg(c.fifo_dir())
        .args(["--runtime", MICROVM]);
    if let Some(config) = &vms.config {
        command.arg("--runtime-config-path").arg(config);
    }
    command
        .args([c.image(), id, "echo", "first"])
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
fn detached(vms: &Vms) {
    let c = vms.c;
    if vms.guest_release().is_none() {
        return;
    }
    let id = "vm-detached";
    c.run_detached(&vms.opts(id, ["sh", "-c", "echo up > /started; exec sleep 600"]))
        .unwrap();
    let task = c
        .wait_status(id, "RUNNING", Duration::from_secs(60))
        .unwrap();
    // The task's pid is its VM's monitor.
    assert!(
        vms.is_vmm(task.pid),
        "task pid {} is not a {:?} VMM",
        task.pid,
        vms.monitor
    );
    // The monitor runs under its own seccomp filter (QEMU's `-sandbox on`,
    // the built-in VMM's allow-list, entered with no capabilities left).
    let status = std::fs::read_to_string(format!("/proc/{}/status", task.pid)).unwrap();
    assert!(
        status.lines().any(|l| l == "Seccomp:\t2"),
        "VMM {} has no seccomp filter",
        task.pid
    );
    if vms.monitor == Monitor::Builtin {
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            let line = status
                .lines()
                .find(|l| l.starts_with(set))
                .unwrap_or_default();
            assert!(
                line.ends_with("0000000000000000"),
                "the built-in VMM kept capabilities: {line}"
            );
        }
    }
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or_default();
    println!(
        "measured: {:?} VMM of an idle microVM container, {rss}",
        vms.monitor
    );
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
    assert_eq!(metric(&out, "pids.current"), Some(1), "{out}");
    assert!(metric(&out, "memory.usage").is_some_and(|m| m > 0), "{out}");
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
        "the VMM is not stopped while paused: {state}"
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
    vms.wait_vmm_gone(task.pid);
    for file in ["rootfs.img", "agent.sock", "vmm.pid"] {
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
    // SAFETY: kill(2) by the PID of a VMM or shim of this test's containerd.
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
/// dies leaves no VM behind, because the shim's `delete` ends it, its exit
/// is recorded as 137, and the same container id runs again at once.
fn deaths(vms: &Vms) {
    let c = vms.c;
    if vms.guest_release().is_none() {
        return;
    }
    let id = "vm-dies";
    c.run_detached(&vms.opts(id, ["sleep", "600"])).unwrap();
    let task = c
        .wait_status(id, "RUNNING", Duration::from_secs(60))
        .unwrap();
    assert!(
        vms.is_vmm(task.pid),
        "task pid {} is not a {:?} VMM",
        task.pid,
        vms.monitor
    );
    sigkill(task.pid);
    c.wait_status(id, "STOPPED", Duration::from_secs(15))
        .unwrap();
    assert_eq!(c.delete_task(id).unwrap(), 137);
    c.delete_container(id).unwrap();

    let id = "vm-shim-dies";
    let fifos_before = fifo_dirs(c);
    c.run_detached(&vms.opts(id, ["sleep", "600"])).unwrap();
    let task = c
        .wait_status(id, "RUNNING", Duration::from_secs(60))
        .unwrap();
    let shim = c.shim_server(id).expect("the shim server of the container");
    let watcher = c.watch_events().unwrap();
    sigkill(shim.pid as u32);
    vms.wait_vmm_gone(task.pid);
    let exit = watcher
        .wait_for(Duration::from_secs(30), |e| {
            e.topic == "/tasks/exit" && e.container_id() == id
        })
        .unwrap();
    assert_eq!(exit.u64_field("exit_status"), 137, "{exit:?}");
    drop(watcher);
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
    let out = c.run(&vms.opts(id, ["echo", "again"])).unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "again\n", "{out}");
}

#[test]
fn foreground_containers() {
    run_case(MICROVM, |c| foreground(&Vms::auto(c)));
}

#[test]
fn detached_container() {
    run_case(MICROVM, |c| detached(&Vms::auto(c)));
}

#[test]
fn vm_and_shim_deaths() {
    run_case(MICROVM, |c| deaths(&Vms::auto(c)));
}

#[test]
fn foreground_containers_builtin() {
    run_case(MICROVM, |c| {
        if let Some(vms) = Vms::builtin(c) {
            foreground(&vms);
        }
    });
}

#[test]
fn detached_container_builtin() {
    run_case(MICROVM, |c| {
        if let Some(vms) = Vms::builtin(c) {
            detached(&vms);
        }
    });
}

#[test]
fn vm_and_shim_deaths_builtin() {
    run_case(MICROVM, |c| {
        if let Some(vms) = Vms::builtin(c) {
            deaths(&vms);
        }
    });
}
