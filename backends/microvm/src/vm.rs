//! One VMM process per VM (a lone container's, or a pod's), whichever
//! monitor runs it: the files it leaves in the state directory, its pid
//! file, its console and errors in the shim's log, its exit, the agent's
//! socket, and its end. What differs per monitor is its command line
//! ([`qemu`], [`builtin`]) and which side listens on the agent's socket.

mod builtin;
mod qemu;

use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use strata_agent::console::RAW_READY;
use strata_backend::{reaper, Error, Exit, Result};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::sync::watch;

use crate::hypervisor::Monitor;

/// The agent's socket, relative to the state directory (the VMM runs there,
/// which keeps the path short whatever the bundle's path is).
pub const SOCKET: &str = "agent.sock";
/// The file recording the VMM's pid, for the cleanup after a killed shim.
pub const PID_FILE: &str = "vmm.pid";
/// The root filesystem image of the VM's first container.
pub const DISK: &str = "rootfs.img";

/// The spare disks a pod's VM boots with, one per app container that may
/// run in it at once: the virtio-mmio bus has no hot-plug, so the disks
/// are there from the start and the host writes an app container's root
/// filesystem into a free one's image.
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

/// The guest kernel's command line on every monitor: the console on COM1,
/// and a panic (PID 1, the agent, failing) ends the VM at once.
const CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// How long the VMM may take to make (QEMU) or connect to (built-in) the
/// agent's socket.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// What a VM is made of.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The container id, for names and log lines.
    pub id: String,
    /// The monitor that runs it.
    pub monitor: Monitor,
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

/// Which side of the agent's socket the shim is.
enum Channel {
    /// QEMU listens; the shim connects.
    Connect,
    /// The shim listens (bound before the VMM started); the VMM connects.
    Accept(UnixListener),
}

/// A running VMM process.
pub struct Vm {
    id: String,
    pid: i32,
    program: &'static str,
    state_dir: PathBuf,
    channel: Channel,
    exited: watch::Receiver<Option<u32>>,
}

impl Vm {
    /// Starts the VMM for `config` in its state directory; its console and
    /// errors go to the log.
    pub fn launch(config: &VmConfig) -> Result<Vm> {
        let spares = (0..config.spares).try_for_each(|slot| {
            let image = config.state_dir.join(format!("{}.img", spare(slot)));
            std::fs::File::create(&image)
                .and_then(|f| f.set_len(SPARE_SIZE))
                .map_err(|e| Error::path("creating the spare disk", image, e))
        });
        let prepared = spares.and_then(|()| match config.monitor {
            Monitor::Qemu(accel) => {
                Ok((qemu::command(config, accel), qemu::QEMU, Channel::Connect))
            }
            Monitor::Builtin => Ok((
                builtin::command(config),
                builtin::PROGRAM,
                Channel::Accept(builtin::listen(&config.state_dir)?),
            )),
        });
        let (mut command, program, channel) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                let _ = cleanup(&config.state_dir);
                return Err(e);
            }
        };
        command
            .current_dir(&config.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| Error::io(format!("starting {program} for {}", config.id), e))?;
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
            log::info!("vm {id}: {program} (pid {pid}) exited with {code}");
            let _ = tx.send(Some(code));
        });
        log::info!(
            "vm {}: {program} pid {pid}, {} vCPU, {} MiB, {} spare disks, kernel {}, {:?}",
            config.id,
            config.vcpus,
            config.memory_mib,
            config.spares,
            config.kernel.display(),
            config.monitor
        );
        Ok(Vm {
            id: config.id.clone(),
            pid,
            program,
            state_dir: config.state_dir.clone(),
            channel,
            exited,
        })
    }

    /// The id of the container that booted the VM.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The VMM's pid.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The VMM's exit code, once it has exited.
    pub fn exit_code(&self) -> Option<u32> {
        *self.exited.borrow()
    }

    /// The stream to the agent, once the VMM has made its socket (QEMU), or
    /// connected to the shim's and the agent has made its tty port raw
    /// (built-in, which waits for the guest to boot).
    pub async fn connect(&self) -> Result<UnixStream> {
        let deadline = Instant::now() + SOCKET_TIMEOUT;
        let socket = self.state_dir.join(SOCKET);
        match &self.channel {
            Channel::Connect => {
                let (_dir, path) = socket_path(&self.state_dir)?;
                loop {
                    self.running_before_socket()?;
                    match UnixStream::connect(&path).await {
                        Ok(stream) => return Ok(stream),
                        Err(e) if Instant::now() >= deadline => {
                            return Err(Error::io(format!("connecting to {}", socket.display()), e))
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }
            Channel::Accept(listener) => {
                let accept_err = |e| Error::io(format!("accepting on {}", socket.display()), e);
                let listener = listener
                    .try_clone()
                    .and_then(tokio::net::UnixListener::from_std)
                    .map_err(accept_err)?;
                let mut exited = self.exited.clone();
                let accepted = tokio::time::timeout_at(deadline.into(), async {
                    tokio::select! {
                        accepted = listener.accept() => Some(accepted),
                        _ = exited.wait_for(|e| e.is_some()) => None,
                    }
                })
                .await;
                match accepted {
                    Ok(Some(Ok((stream, _)))) => self.raw_ready(stream).await,
                    Ok(Some(Err(e))) => Err(accept_err(e)),
                    // The VMM exited (the check below says so), or never connected.
                    Ok(None) | Err(_) => {
                        self.running_before_socket()?;
                        Err(Error::Process(format!(
                            "vm {}: {} did not connect to {} within {SOCKET_TIMEOUT:?}",
                            self.id,
                            self.program,
                            socket.display()
                        )))
                    }
                }
            }
        }
    }

    /// Waits on the built-in VMM's `stream` until the agent says its tty
    /// port is raw ([`RAW_READY`]), so that nothing the shim sends meets a
    /// line discipline that still echoes; fails if the VMM exits first.
    async fn raw_ready(&self, mut stream: UnixStream) -> Result<UnixStream> {
        let mut exited = self.exited.clone();
        let mut marker = [0u8; RAW_READY.len()];
        let read = tokio::select! {
            read = stream.read_exact(&mut marker) => read,
            _ = exited.wait_for(|e| e.is_some()) => return Err(self.exited_early()),
        };
        read.map_err(|e| {
            Error::io(
                format!("vm {}: reading the agent's first bytes", self.id),
                e,
            )
        })?;
        if marker != RAW_READY {
            return Err(Error::Process(format!(
                "vm {}: the agent's port began with {:?}, not {:?}",
                self.id,
                String::from_utf8_lossy(&marker),
                String::from_utf8_lossy(RAW_READY)
            )));
        }
        Ok(stream)
    }

    /// Fails, pointing at the log, if the VMM has exited.
    fn running_before_socket(&self) -> Result<()> {
        match self.exit_code() {
            Some(_) => Err(self.exited_early()),
            None => Ok(()),
        }
    }

    /// The error of a VMM that exited before its agent's port was ready.
    fn exited_early(&self) -> Error {
        let status = self
            .exit_code()
            .map_or_else(|| "an unknown status".to_owned(), |code| code.to_string());
        Error::Process(format!(
            "vm {}: {} exited with {status} before its agent socket was ready; \
             its console is in the shim's log",
            self.id, self.program
        ))
    }

    /// Sends `signal` to the VMM (a stopped VMM is a paused VM).
    pub fn signal(&self, signal: Signal) -> Result<()> {
        if self.exit_code().is_some() {
            return Ok(());
        }
        kill(Pid::from_raw(self.pid), signal).map_err(|e| {
            Error::sys(
                format!("sending {signal} to {} {}", self.program, self.pid),
                e,
            )
        })
    }

    /// Waits up to `grace` for the VMM to exit, then kills it and waits for that.
    pub async fn stop(&self, grace: Duration) {
        let mut exited = self.exited.clone();
        let ended = tokio::time::timeout(grace, exited.wait_for(|e| e.is_some()))
            .await
            .is_ok();
        if !ended {
            log::info!("vm {}: killing {} {}", self.id, self.program, self.pid);
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

/// The agent's socket in `state_dir`, named through an open descriptor of
/// the directory, so that the path fits a socket address whatever the
/// state directory's path; the directory (returned) must stay open while
/// the path is used.
fn socket_path(state_dir: &Path) -> Result<(std::fs::File, String)> {
    let dir = std::fs::File::open(state_dir).map_err(|e| Error::path("opening", state_dir, e))?;
    let path = format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd());
    Ok((dir, path))
}

/// Kills a VMM left by a shim that died (found through its pid file and
/// checked to run in `state_dir`), then removes the VM's files, spare
/// disks and socket included.
pub fn cleanup(state_dir: &Path) -> Result<()> {
    let pid_file = state_dir.join(PID_FILE);
    if let Ok(text) = std::fs::read_to_string(&pid_file) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            let dir = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
            let ours = std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir);
            if ours {
                log::info!("killing the VMM {pid} left in {}", state_dir.display());
                match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                    Err(e) => return Err(Error::sys(format!("killing the VMM {pid}"), e)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A `Vm` for a `sleep` standing in for a VMM that has connected, and
    /// the sender of its exit.
    fn vm(child: &std::process::Child) -> (Vm, watch::Sender<Option<u32>>) {
        let (tx, exited) = watch::channel(None);
        let vm = Vm {
            id: "c1".into(),
            pid: child.id() as i32,
            program: builtin::PROGRAM,
            state_dir: std::env::temp_dir(),
            channel: Channel::Connect,
            exited,
        };
        (vm, tx)
    }

    /// The built-in VMM's stream is handed over only after the agent's
    /// announcement, which is taken off it; another first line, or a VMM
    /// that exits first, fails naming what happened.
    #[tokio::test]
    async fn the_agent_announces_its_raw_tty_first() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let (vm, exit) = vm(&child);

        let (mut guest, host) = UnixStream::pair().unwrap();
        guest.write_all(RAW_READY).await.unwrap();
        guest.write_all(b"frame").await.unwrap();
        let mut stream = vm.raw_ready(host).await.unwrap();
        let mut rest = [0u8; 5];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"frame");

        let (mut guest, host) = UnixStream::pair().unwrap();
        guest.write_all(&[b'x'; RAW_READY.len()]).await.unwrap();
        let err = vm.raw_ready(host).await.unwrap_err().to_string();
        assert!(err.contains("xxxx") && err.contains("not"), "{err}");

        let (_guest, host) = UnixStream::pair().unwrap();
        exit.send(Some(137)).unwrap();
        let err = vm.raw_ready(host).await.unwrap_err().to_string();
        assert!(
            err.contains("strata-vmm exited with 137 before its agent socket was ready"),
            "{err}"
        );

        drop(vm);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
