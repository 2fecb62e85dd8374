//! One QEMU process per VM (a lone container's, or a pod's): its command
//! line, its console in the shim's log, its exit, and the files it leaves
//! in the state directory.

use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use strata_agent::protocol::{PORT_NAME, ROOT_DISK};
use strata_backend::{reaper, Error, Exit, Result};
use tokio::net::UnixStream;
use tokio::sync::watch;

use crate::hypervisor::Accel;

/// The agent's socket, relative to the state directory (QEMU runs there,
/// which keeps the path short whatever the bundle's path is).
pub const SOCKET: &str = "agent.sock";
/// The file recording QEMU's pid, for the cleanup after a killed shim.
pub const PID_FILE: &str = "qemu.pid";
/// The root filesystem image of the VM's first container.
pub const DISK: &str = "rootfs.img";

/// The spare disks a pod's VM boots with, one per app container that may
/// run in it at once: the microvm machine's virtio-mmio bus has no
/// hot-plug, so the disks are there from the start and the host writes an
/// app container's root filesystem into a free one's image.
pub const SPARES: usize = 8;

/// The size of each spare disk's image (a sparse file: what the guest does
/// not write costs nothing); the largest root filesystem an app container
/// of a pod can have.
pub const SPARE_SIZE: u64 = 4 << 30;

/// The name of spare disk `slot`: its image is `<name>.img` in the state
/// directory, and the guest finds it by this serial.
pub fn spare(slot: usize) -> String {
    format!("spare{slot}")
}

/// The QEMU binary.
const QEMU: &str = "qemu-system-x86_64";

/// How long QEMU may take to create the agent's socket.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// What a VM is made of.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The container id, for names and log lines.
    pub id: String,
    /// How guest code runs.
    pub accel: Accel,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The initramfs with the agent.
    pub initramfs: PathBuf,
    /// The directory holding the disks, socket and pid file.
    pub state_dir: PathBuf,
    /// Spare disks to attach (a pod's VM has [`SPARES`], a lone container's none).
    pub spares: usize,
}

/// A running QEMU.
pub struct Vm {
    id: String,
    pid: i32,
    state_dir: PathBuf,
    exited: watch::Receiver<Option<u32>>,
}

impl Vm {
    /// Starts QEMU for `config`; its console goes to the log.
    pub fn launch(config: &VmConfig) -> Result<Vm> {
        let mut command = Command::new(QEMU);
        command
            .current_dir(&config.state_dir)
            .args(["-name", &format!("strata-{}", config.id)])
            .args(["-M", "microvm", "-accel", config.accel.as_str()])
            .args(["-smp", &config.vcpus.to_string()])
            .args(["-m", &config.memory_mib.to_string()])
            .args([
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
            ])
            // QEMU's own seccomp filter: once the VM runs, QEMU may not gain
            // privileges, start programs, change resource limits or make
            // obsolete syscalls; a compromised device model is held there.
            .args([
                "-sandbox",
                "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            ])
            .args(["-serial", "stdio"])
            .arg("-kernel")
            .arg(&config.kernel)
            .arg("-initrd")
            .arg(&config.initramfs)
            .args(["-append", &kernel_command_line(config.accel)])
            .args(["-device", "virtio-serial-device"])
            .args([
                "-chardev",
                &format!("socket,id=agent,path={SOCKET},server=on,wait=off"),
            ])
            .args([
                "-device",
                &format!("virtserialport,chardev=agent,name={PORT_NAME}"),
            ])
            .args([
                "-drive",
                &format!("id=root,file={DISK},format=raw,if=none,cache=unsafe"),
            ])
            .args([
                "-device",
                &format!("virtio-blk-device,drive=root,serial={ROOT_DISK}"),
            ]);
        for slot in 0..config.spares {
            let name = spare(slot);
            command
                .args([
                    "-drive",
                    &format!("id={name},file={name}.img,format=raw,if=none,cache=unsafe"),
                ])
                .args([
                    "-device",
                    &format!("virtio-blk-device,drive={name},serial={name}"),
                ]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if config.accel == Accel::Kvm {
            command.args(["-cpu", "host"]);
        }
        let spares = (0..config.spares).try_for_each(|slot| {
            let image = config.state_dir.join(format!("{}.img", spare(slot)));
            std::fs::File::create(&image)
                .and_then(|f| f.set_len(SPARE_SIZE))
                .map_err(|e| Error::path("creating the spare disk", image, e))
        });
        if let Err(e) = spares {
            let _ = cleanup(&config.state_dir);
            return Err(e);
        }
        let mut child = command
            .spawn()
            .map_err(|e| Error::io(format!("starting {QEMU} for {}", config.id), e))?;
        let pid = child.id() as i32;
        let status = reaper::watch(pid);
        let pid_file = config.state_dir.join(PID_FILE);
        if let Err(e) = std::fs::write(&pid_file, pid.to_string()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            return Err(Error::path("writing", pid_file, e));
        }
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let id = config.id.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(|l| l.ok())
                {
                    log::info!("vm {id}: {line}");
                }
            });
        }
        let (tx, exited) = watch::channel(None);
        let id = config.id.clone();
        tokio::spawn(async move {
            let code = Exit::code_from_wait_status(status.await.unwrap_or(libc::SIGKILL));
            log::info!("vm {id}: {QEMU} (pid {pid}) exited with {code}");
            let _ = tx.send(Some(code));
        });
        log::info!(
            "vm {}: {QEMU} pid {pid}, {} vCPU, {} MiB, {} spare disks, accel {}",
            config.id,
            config.vcpus,
            config.memory_mib,
            config.spares,
            config.accel.as_str()
        );
        Ok(Vm {
            id: config.id.clone(),
            pid,
            state_dir: config.state_dir.clone(),
            exited,
        })
    }

    /// The id of the container that booted the VM.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// QEMU's exit code, once it has exited.
    pub fn exit_code(&self) -> Option<u32> {
        *self.exited.borrow()
    }

    /// Connects to the agent's socket once QEMU has made it.
    pub async fn connect(&self) -> Result<UnixStream> {
        // Through the directory's descriptor, the path stays short enough
        // for a socket address whatever the state directory's path.
        let dir = std::fs::File::open(&self.state_dir)
            .map_err(|e| Error::path("opening", &self.state_dir, e))?;
        let path = format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd());
        let deadline = Instant::now() + SOCKET_TIMEOUT;
        loop {
            if let Some(code) = self.exit_code() {
                return Err(Error::Process(format!(
                    "vm {}: {QEMU} exited with {code} before its agent socket was ready; \
                     its console is in the shim's log",
                    self.id
                )));
            }
            match UnixStream::connect(&path).await {
                Ok(stream) => return Ok(stream),
                Err(e) if Instant::now() >= deadline => {
                    return Err(Error::io(
                        format!("connecting to {}", self.state_dir.join(SOCKET).display()),
                        e,
                    ))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// Sends `signal` to QEMU (a stopped QEMU is a paused VM).
    pub fn signal(&self, signal: Signal) -> Result<()> {
        if self.exit_code().is_some() {
            return Ok(());
        }
        kill(Pid::from_raw(self.pid), signal)
            .map_err(|e| Error::sys(format!("sending {signal} to {QEMU} {}", self.pid), e))
    }

    /// Waits up to `grace` for QEMU to exit, then kills it and waits for that.
    pub async fn stop(&self, grace: Duration) {
        let mut exited = self.exited.clone();
        let ended = tokio::time::timeout(grace, exited.wait_for(|e| e.is_some()))
            .await
            .is_ok();
        if !ended {
            log::info!("vm {}: killing {QEMU} {}", self.id, self.pid);
            let _ = self.signal(Signal::SIGCONT);
            let _ = self.signal(Signal::SIGKILL);
            let _ = exited.wait_for(|e| e.is_some()).await;
        }
    }
}

impl Drop for Vm {
    /// A VM outlives nothing that owns it: one that was not stopped is killed.
    fn drop(&mut self) {
        if self.exit_code().is_none() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
    }
}

/// The guest kernel's command line. Under TCG, the guest's TSC runs at the
/// host's rate but the kernel's calibration against the emulated PIT fails
/// on a busy host (and the boot then stalls), so the rate is given.
fn kernel_command_line(accel: Accel) -> String {
    let mut line = String::from("console=ttyS0 quiet panic=-1");
    if accel == Accel::Tcg {
        if let Some(khz) = host_tsc_khz() {
            line.push_str(&format!(" tsc_early_khz={khz} tsc=reliable"));
        }
    }
    line
}

/// The host CPU's clock rate in kHz, from `/proc/cpuinfo`.
fn host_tsc_khz() -> Option<u64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("cpu MHz"))?
        .trim_start_matches([' ', '\t', ':'])
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}

/// Kills a QEMU left by a shim that died (found through its pid file and
/// checked to run in `state_dir`), then removes the VM's files, spare
/// disks included.
pub fn cleanup(state_dir: &Path) -> Result<()> {
    let pid_file = state_dir.join(PID_FILE);
    if let Ok(text) = std::fs::read_to_string(&pid_file) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            let dir = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
            let ours = std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir);
            if ours {
                log::info!("killing the {QEMU} {pid} left in {}", state_dir.display());
                match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                    Err(e) => return Err(Error::sys(format!("killing {QEMU} {pid}"), e)),
                }
                wait_gone(pid);
            }
        }
    }
    let spares = (0..SPARES).map(|slot| format!("{}.img", spare(slot)));
    for name in [SOCKET, DISK, PID_FILE]
        .map(String::from)
        .into_iter()
        .chain(spares)
    {
        let path = state_dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::path("removing", path, e)),
        }
    }
    Ok(())
}

/// Waits (briefly) until `pid` no longer exists, so its files are closed.
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie that holds no files any more.
        if state.is_empty()
            || state
                .rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
