//! A Kubernetes-style pod in one microVM, through the backend without
//! containerd: the sandbox boots the VM, sized by its annotations; app
//! containers join it on spare disks, talk over the VM's loopback and share
//! its hostname; a removed container's disk is reused by the next one, and
//! removing a running container ends it; the
//! sandbox's Delete ends the VM and removes every file (skipped, saying so,
//! when the guest files of scripts/guest.sh are missing).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use strata_backend::{Backend, Container, CreateRequest, Stdio};
use strata_config::{Hypervisor, MicrovmOptions, MICROVM_DATA_DIR, QEMU_KERNEL};
use strata_microvm::MicrovmBackend;

/// The sandbox id of the test's pod.
const POD: &str = "pod-test";

/// The class memory the test runs with, and the pod memory the sandbox's
/// annotation adds to it.
const CLASS_MIB: u64 = 256;
const POD_MIB: u64 = 64;

/// A bundle whose root filesystem holds busybox and a file naming it.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new(name: &str) -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
        for applet in [
            "sh", "echo", "cat", "sleep", "hostname", "httpd", "wget", "mkdir",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        std::fs::write(dir.path().join("rootfs/name"), name).unwrap();
        Bundle { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A request for container `id` running `args`, with the CRI
    /// annotations of a sandbox (`sandbox`) or an app container of [`POD`].
    fn request(&self, id: &str, args: &[&str], sandbox: bool) -> CreateRequest {
        let annotations = if sandbox {
            serde_json::json!({
                "io.kubernetes.cri.container-type": "sandbox",
                "io.kubernetes.cri.sandbox-id": POD,
                "io.kubernetes.cri.sandbox-memory": (POD_MIB << 20).to_string()
            })
        } else {
            serde_json::json!({
                "io.kubernetes.cri.container-type": "container",
                "io.kubernetes.cri.sandbox-id": POD
            })
        };
        let spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "hostname": if sandbox { "podhost" } else { "" },
            "annotations": annotations,
            "process": {
                "args": args,
                "cwd": "/",
                "env": ["PATH=/bin"],
                "user": {"uid": 0, "gid": 0}
            },
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]
        }))
        .unwrap();
        CreateRequest {
            id: id.into(),
            bundle: self.path().to_owned(),
            state_dir: self.path().to_owned(),
            spec,
            stdio: Stdio::default(),
        }
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

/// Runs `args` in `container` and returns its exit code and output.
async fn run(container: &dyn Container, exec_id: &str, args: &[&str]) -> (u32, String) {
    let dir = tempfile::tempdir().unwrap();
    let fifo: PathBuf = dir.path().join("out");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(fifo)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        })
    };
    let process = serde_json::from_value(serde_json::json!({
        "args": args, "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}
    }))
    .unwrap();
    let stdio = Stdio {
        stdout: Some(fifo),
        ..Stdio::default()
    };
    let exec = container.exec(exec_id, process, stdio).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(60), exec.wait())
        .await
        .unwrap();
    drop(exec);
    (exit.code, reader.join().unwrap())
}

/// QEMU processes that are children of this test process.
fn qemu_children() -> Vec<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
            let fields: Vec<&str> = after.split_whitespace().collect();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            fields.get(1) == Some(&me.as_str())
                && fields.first() != Some(&"Z")
                && comm.starts_with("qemu-system")
        })
        .collect()
}

#[tokio::test]
async fn a_pod_runs_in_one_vm_and_leaves_nothing() {
    let Some(backend) = backend() else { return };
    strata_backend::reaper::start().unwrap();
    let sandbox_bundle = Bundle::new("pause");
    let started = Instant::now();
    let sandbox = backend
        .create(sandbox_bundle.request(POD, &["sleep", "3600"], true))
        .await
        .unwrap();
    sandbox.start().await.unwrap();
    println!("measured: sandbox Create+Start {:?}", started.elapsed());
    let qemu = sandbox.pids().await.unwrap()[0];

    let web_bundle = Bundle::new("web");
    let web = backend
        .create(web_bundle.request(
            "web",
            &[
                "sh",
                "-c",
                "mkdir -p /www && echo hello-from-web > /www/index.html \
                 && exec httpd -f -p 8080 -h /www",
            ],
            false,
        ))
        .await
        .unwrap();
    web.start().await.unwrap();
    let client_bundle = Bundle::new("client");
    let client = backend
        .create(client_bundle.request("client", &["sleep", "3600"], false))
        .await
        .unwrap();
    client.start().await.unwrap();

    // One VM: every container reports the same QEMU, the only one running.
    assert_eq!(web.pids().await.unwrap(), [qemu]);
    assert_eq!(client.pids().await.unwrap(), [qemu]);
    assert_eq!(qemu_children(), [qemu]);

    // Each container sees its own root filesystem; all share the hostname.
    assert_eq!(run(&*web, "n1", &["cat", "/name"]).await, (0, "web".into()));
    assert_eq!(
        run(&*client, "n2", &["cat", "/name"]).await,
        (0, "client".into())
    );
    assert_eq!(
        run(&*client, "h", &["hostname"]).await,
        (0, "podhost\n".into())
    );

    // The VM's memory is the class's plus the pod's annotation.
    let (_, meminfo) = run(&*client, "m", &["cat", "/proc/meminfo"]).await;
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        total_kib > CLASS_MIB * 1024 && total_kib <= (CLASS_MIB + POD_MIB) * 1024,
        "guest memory {total_kib} KiB, expected above {CLASS_MIB} MiB, up to {} MiB",
        CLASS_MIB + POD_MIB
    );

    // The containers talk over the VM's loopback.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let got = run(
            &*client,
            &format!("wget{attempt}"),
            &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
        )
        .await;
        if got == (0, "hello-from-web\n".into()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer over loopback: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Statistics are the container's own: web runs one process.
    let stats = web.stats().await.unwrap();
    assert_eq!(stats.stats.pids.current, 1);
    assert!(stats.stats.memory.usage > 0);

    // A removed container's disk goes to the next one, with its own content.
    assert_eq!(
        run(&*client, "w", &["sh", "-c", "echo x > /client-was-here"]).await,
        (0, String::new())
    );
    client.kill_all(libc::SIGKILL as u32).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), client.init().wait())
        .await
        .unwrap();
    assert_eq!(exit.code, 137);
    client.destroy().await.unwrap();
    drop(client);
    let next_bundle = Bundle::new("next");
    let next = backend
        .create(next_bundle.request("next", &["sleep", "3600"], false))
        .await
        .unwrap();
    next.start().await.unwrap();
    assert_eq!(
        run(&*next, "n3", &["cat", "/name"]).await,
        (0, "next".into())
    );
    assert_eq!(
        run(
            &*next,
            "fresh",
            &[
                "sh",
                "-c",
                "test -e /client-was-here && echo stale || echo fresh"
            ]
        )
        .await,
        (0, "fresh\n".into())
    );
    // The sandbox, and web, still run.
    assert!(sandbox.init().try_exit().is_none());
    assert_eq!(run(&*web, "n4", &["cat", "/name"]).await, (0, "web".into()));

    next.kill_all(libc::SIGKILL as u32).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), next.init().wait())
        .await
        .unwrap();
    next.destroy().await.unwrap();
    // Removing a container that still runs ends it first.
    web.destroy().await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), web.init().wait())
        .await
        .unwrap();
    assert_eq!(exit.code, 137);
    assert_eq!(
        qemu_children(),
        [qemu],
        "the VM outlives its app containers"
    );
    sandbox.kill_all(libc::SIGKILL as u32).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), sandbox.init().wait())
        .await
        .unwrap();
    sandbox.destroy().await.unwrap();
    drop(sandbox);
    assert!(qemu_children().is_empty(), "QEMU left running");
    let left: Vec<_> = std::fs::read_dir(sandbox_bundle.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "rootfs")
        .collect();
    assert!(left.is_empty(), "left in the sandbox's directory: {left:?}");

    // No container of the pod can join it any more.
    let late = Bundle::new("late");
    let err = backend
        .create(late.request("late", &["sleep", "1"], false))
        .await
        .err()
        .expect("joining a pod whose VM is gone")
        .to_string();
    assert!(err.contains(POD), "{err}");
}
