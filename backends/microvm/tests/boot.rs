//! Boots real microVMs through the backend, without containerd: output,
//! exit codes, exec, stdin and teardown, against the guest files that
//! scripts/guest.sh makes (skipped, saying so, when they are missing).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use strata_backend::{Backend, CreateRequest, Stdio};
use strata_config::{Hypervisor, MicrovmOptions, MICROVM_DATA_DIR, QEMU_KERNEL};
use strata_microvm::MicrovmBackend;

/// A bundle with a busybox root filesystem and FIFOs for stdio.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
        for applet in [
            "sh", "echo", "cat", "head", "uname", "sleep", "touch", "ls", "hostname", "tty", "stty",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        Bundle { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn fifo(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        path
    }

    fn spec(&self, args: &[&str]) -> oci_spec::runtime::Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "hostname": "guest",
            "process": {
                "args": args,
                "cwd": "/",
                "env": ["PATH=/bin"],
                "user": {"uid": 0, "gid": 0}
            },
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]
        }))
        .unwrap()
    }
}

/// The backend on QEMU, whose processes these tests watch (a test binary
/// cannot be re-executed as the built-in VMM); `None` if the guest files
/// are missing.
fn backend() -> Option<MicrovmBackend> {
    let mut options = MicrovmOptions::default();
    options.hypervisor = Hypervisor::Qemu;
    let kernel = Path::new(MICROVM_DATA_DIR).join(QEMU_KERNEL);
    if !kernel.exists() || !options.initramfs.exists() {
        println!(
            "skipped: the guest kernel {} or initramfs {} is missing (run scripts/guest.sh)",
            kernel.display(),
            options.initramfs.display()
        );
        return None;
    }
    Some(MicrovmBackend::new(options))
}

/// Reads a FIFO to its end on a thread; also returns when its first byte came.
fn collect(path: PathBuf) -> std::thread::JoinHandle<(String, Instant)> {
    std::thread::spawn(move || {
        let mut fifo = std::fs::File::open(path).unwrap();
        let mut first = [0; 1];
        fifo.read_exact(&mut first).unwrap();
        let at = Instant::now();
        let mut text = String::from_utf8(first.to_vec()).unwrap();
        fifo.read_to_string(&mut text).unwrap();
        (text, at)
    })
}

#[tokio::test]
async fn a_container_runs_in_its_own_kernel_and_leaves_nothing() {
    let Some(backend) = backend() else { return };
    strata_backend::reaper::start().unwrap();
    let bundle = Bundle::new();
    let stdout = bundle.fifo("stdout");
    let output = collect(stdout.clone());
    let spec = bundle.spec(&[
        "sh",
        "-c",
        "echo kernel $(uname -r) host $(hostname); touch /written; exit 3",
    ]);
    let created = Instant::now();
    let container = backend
        .create(CreateRequest {
            id: "boot-test".into(),
            bundle: bundle.path().to_owned(),
            state_dir: bundle.path().to_owned(),
            spec,
            stdio: Stdio {
                stdout: Some(stdout),
                ..Stdio::default()
            },
        })
        .await
        .unwrap();
    let create_took = created.elapsed();
    let qemu = container.pids().await.unwrap()[0];
    container.start().await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(60), container.init().wait())
        .await
        .unwrap();
    assert_eq!(exit.code, 3);
    // The guest's exec shows the same guest kernel as the output.
    let release = std::fs::read_to_string("/var/lib/strata/microvm/kernel-release").unwrap();
    container.destroy().await.unwrap();
    drop(container);
    let (text, first_output) = output.join().unwrap();
    println!(
        "measured: Create {create_took:?}; Create to first output {:?}",
        first_output - created
    );
    assert_eq!(text, format!("kernel {} host guest\n", release.trim()));
    assert!(!bundle.path().join("rootfs/written").exists());
    assert!(!Path::new(&format!("/proc/{qemu}")).exists() || is_zombie(qemu));
    for name in ["rootfs.img", "agent.sock", "vmm.pid"] {
        assert!(!bundle.path().join(name).exists(), "{name} left behind");
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// An OCI process running `args`, with a terminal or not.
fn process(args: &[&str], terminal: bool) -> oci_spec::runtime::Process {
    serde_json::from_value(serde_json::json!({
        "args": args,
        "cwd": "/",
        "env": ["PATH=/bin"],
        "terminal": terminal,
        "user": {"uid": 0, "gid": 0}
    }))
    .unwrap()
}

#[tokio::test]
async fn exec_with_a_terminal_and_with_stdin_then_kill_all() {
    let Some(backend) = backend() else { return };
    strata_backend::reaper::start().unwrap();
    let bundle = Bundle::new();
    let container = backend
        .create(CreateRequest {
            id: "exec-test".into(),
            bundle: bundle.path().to_owned(),
            state_dir: bundle.path().to_owned(),
            spec: bundle.spec(&["sleep", "600"]),
            stdio: Stdio::default(),
        })
        .await
        .unwrap();
    container.start().await.unwrap();

    // A terminal: the process's streams are a pty of the guest, whose size
    // the host sets.
    let tty_in = bundle.fifo("tty-in");
    let tty_out = bundle.fifo("tty-out");
    let tty_text = collect(tty_out.clone());
    let mut typing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&tty_in)
        .unwrap();
    let tty = container
        .exec(
            "tty",
            process(&["sh", "-c", "tty; read line; stty size"], true),
            Stdio {
                stdin: Some(tty_in),
                stdout: Some(tty_out),
                terminal: true,
                ..Stdio::default()
            },
        )
        .await
        .unwrap();
    tty.resize_pty(100, 40).await.unwrap();
    std::io::Write::write_all(&mut typing, b"go\n").unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), tty.wait())
        .await
        .unwrap();
    assert_eq!(exit.code, 0);
    drop(typing);
    let (text, _) = tty_text.join().unwrap();
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.ends_with("40 100\r\n"), "{text:?}");

    // Standard input reaches the process, and its end closes the process's stdin.
    let stdin = bundle.fifo("cat-in");
    let cat_out = bundle.fifo("cat-out");
    let cat_text = collect(cat_out.clone());
    let mut writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&stdin)
        .unwrap();
    let cat = container
        .exec(
            "cat",
            process(&["cat"], false),
            Stdio {
                stdin: Some(stdin),
                stdout: Some(cat_out),
                ..Stdio::default()
            },
        )
        .await
        .unwrap();
    std::io::Write::write_all(&mut writer, b"through the agent\n").unwrap();
    drop(writer);
    let exit = tokio::time::timeout(Duration::from_secs(30), cat.wait())
        .await
        .unwrap();
    assert_eq!(exit.code, 0);
    assert_eq!(cat_text.join().unwrap().0, "through the agent\n");

    // Every process of the container gets the signal.
    container.kill_all(libc::SIGKILL as u32).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), container.init().wait())
        .await
        .unwrap();
    assert_eq!(exit.code, 137);
    container.destroy().await.unwrap();
    for name in ["rootfs.img", "agent.sock", "vmm.pid"] {
        assert!(!bundle.path().join(name).exists(), "{name} left behind");
    }
}
