//! Finds the port the host talks to the agent on: under QEMU, the
//! virtio-serial port named [`PORT_NAME`] (a multiport console device);
//! under the built-in VMM, whose virtio console has one port and no
//! multiport, that port as the tty `/dev/hvc0`, put into raw mode so that
//! the protocol's bytes pass untouched, then announced with [`RAW_READY`].

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use strata_agent::console::RAW_READY;
use strata_agent::protocol::PORT_NAME;

use crate::error::{io, sys, AgentError, Result};

/// How long the port may take to appear after its driver was loaded.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(10);
/// The virtio device id of a console.
const CONSOLE_DEVICE: &str = "0x0003";
/// The console feature bit saying the device has several (named) ports.
const MULTIPORT_BIT: usize = 1;
/// The tty of the first console port without multiport.
const HVC: &str = "hvc0";

/// Opens the agent's port for reading and writing, waiting for the driver
/// to create it; a tty is put into raw mode.
pub fn open() -> Result<File> {
    let deadline = Instant::now() + APPEAR_TIMEOUT;
    loop {
        let opened = match find(Path::new("/sys"), Path::new("/dev"))? {
            Some(device) => open_raw(&device).map(Some),
            None => Ok(None),
        };
        match opened {
            Ok(Some(port)) => return Ok(port),
            Ok(None) if Instant::now() >= deadline => {
                return Err(AgentError::Refused(format!(
                    "no virtio-serial port named {PORT_NAME} and no single-port \
                     virtio console appeared in {APPEAR_TIMEOUT:?}"
                )))
            }
            // The hvc tty exists before its driver has bound it to the port.
            Err(e) if Instant::now() >= deadline => return Err(e),
            Ok(None) | Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Opens `device` read-write, never as a controlling terminal, and makes a
/// tty raw (no echo, no line editing, no translation of either direction),
/// then tells the host so with [`RAW_READY`].
fn open_raw(device: &Path) -> Result<File> {
    let mut port = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(device)
        .map_err(io(format!("opening {}", device.display())))?;
    if nix::unistd::isatty(&port).unwrap_or(false) {
        let mut termios =
            tcgetattr(&port).map_err(sys(format!("reading the modes of {}", device.display())))?;
        cfmakeraw(&mut termios);
        tcsetattr(&port, SetArg::TCSANOW, &termios)
            .map_err(sys(format!("making {} raw", device.display())))?;
        port.write_all(RAW_READY)
            .map_err(io(format!("writing to {}", device.display())))?;
    }
    Ok(port)
}

/// The device node of the agent's port under `sys` and `dev`, if it exists
/// yet: the port named [`PORT_NAME`], else the tty of a virtio console
/// without multiport whose port the driver has made.
fn find(sys: &Path, dev: &Path) -> Result<Option<PathBuf>> {
    let ports = sys.join("class/virtio-ports");
    for port in list(&ports)? {
        let name = std::fs::read_to_string(port.join("name")).unwrap_or_default();
        let device = dev.join(port.file_name().unwrap_or_default());
        if name.trim() == PORT_NAME && device.exists() {
            return Ok(Some(device));
        }
    }
    for device in list(&sys.join("bus/virtio/devices"))? {
        let id = std::fs::read_to_string(device.join("device")).unwrap_or_default();
        let features = std::fs::read_to_string(device.join("features")).unwrap_or_default();
        // `features` is one '0'/'1' per bit, bit 0 first.
        let multiport = features.as_bytes().get(MULTIPORT_BIT) == Some(&b'1');
        let index = device
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("virtio"))
            .unwrap_or_default();
        let console_port = ports.join(format!("vport{index}p0"));
        if id.trim() == CONSOLE_DEVICE
            && !features.is_empty()
            && !multiport
            && console_port.exists()
            && dev.join(HVC).exists()
        {
            return Ok(Some(dev.join(HVC)));
        }
    }
    Ok(None)
}

/// The entries of `dir`; none while it does not exist.
fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("listing {}", dir.display()))(e)),
    };
    entries
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(io(format!("listing {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysfs and /dev as the guest kernel makes them, in a directory of
    /// its own that goes away with it.
    struct Host {
        root: PathBuf,
    }

    impl Host {
        fn new(name: &str) -> Host {
            let root = std::env::temp_dir()
                .join(format!("strata-agent-port-{}-{name}", std::process::id()));
            let host = Host { root };
            std::fs::create_dir_all(host.dev()).unwrap();
            host
        }
        fn sys(&self) -> PathBuf {
            self.root.join("sys")
        }
        fn dev(&self) -> PathBuf {
            self.root.join("dev")
        }
        fn write(&self, path: &str, text: &str) {
            let path = self.sys().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        fn node(&self, name: &str) {
            std::fs::write(self.dev().join(name), "").unwrap();
        }
        fn find(&self) -> Option<PathBuf> {
            find(&self.sys(), &self.dev()).unwrap()
        }
        /// A virtio console `virtio{index}` with or without multiport.
        fn console(&self, index: u32, multiport: bool) {
            let features = format!("1{}{}\n", u8::from(multiport), "0".repeat(62));
            self.write(
                &format!("bus/virtio/devices/virtio{index}/device"),
                "0x0003\n",
            );
            self.write(
                &format!("bus/virtio/devices/virtio{index}/features"),
                &features,
            );
        }
    }

    impl Drop for Host {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    /// A tty port (here a pseudo-terminal standing in for hvc0) comes out
    /// raw and announces it with [`RAW_READY`]; then the host's bytes reach
    /// the agent untouched (no line editing, CR or signal characters) and
    /// nothing is echoed. A port that is no tty gets no announcement.
    #[test]
    fn a_tty_port_is_made_raw_and_says_so() {
        use std::io::Read;
        use std::os::fd::AsRawFd;

        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).unwrap();
        let mut master = File::from(pty.master);
        let mut port = open_raw(&slave).unwrap();
        let mut ready = vec![0u8; RAW_READY.len()];
        master.read_exact(&mut ready).unwrap();
        assert_eq!(ready, RAW_READY);

        let termios = tcgetattr(&port).unwrap();
        use nix::sys::termios::{InputFlags, LocalFlags, OutputFlags};
        assert!(!termios.local_flags.intersects(
            LocalFlags::ECHO | LocalFlags::ICANON | LocalFlags::ISIG | LocalFlags::IEXTEN
        ));
        assert!(!termios
            .input_flags
            .intersects(InputFlags::ICRNL | InputFlags::IXON));
        assert!(!termios.output_flags.contains(OutputFlags::OPOST));

        let frame = [0u8, 0, 0, 5, 1, b'\r', 0x03, 0x7f, b'\n'];
        master.write_all(&frame).unwrap();
        let mut got = [0u8; 9];
        port.read_exact(&mut got).unwrap();
        assert_eq!(got, frame);
        port.write_all(b"\n").unwrap();
        let mut echoed = [0u8; 1];
        master.read_exact(&mut echoed).unwrap();
        assert_eq!(
            &echoed, b"\n",
            "the host's bytes were echoed, or \\n became \\r\\n"
        );

        let host = Host::new("file");
        let file = host.dev().join("plain");
        std::fs::write(&file, "").unwrap();
        drop(open_raw(&file).unwrap());
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"",
            "a non-tty got the announcement"
        );
    }

    /// QEMU: the named port is chosen once its name and node exist, not
    /// hvc0, and not while the name is still empty.
    #[test]
    fn named_port_of_a_multiport_console() {
        let host = Host::new("named");
        assert_eq!(host.find(), None);
        host.console(0, true);
        host.node(HVC);
        host.write("class/virtio-ports/vport0p1/name", "");
        host.node("vport0p1");
        assert_eq!(host.find(), None, "a port whose name is not set yet");
        host.write(
            "class/virtio-ports/vport0p1/name",
            &format!("{PORT_NAME}\n"),
        );
        assert_eq!(host.find(), Some(host.dev().join("vport0p1")));
    }

    /// The built-in VMM: a console without multiport is reached as hvc0,
    /// once its port and the tty node exist; another device is ignored.
    #[test]
    fn hvc_of_a_single_port_console() {
        let host = Host::new("hvc");
        host.write("bus/virtio/devices/virtio0/device", "0x0002\n");
        host.write("bus/virtio/devices/virtio0/features", "1000\n");
        host.console(1, false);
        assert_eq!(host.find(), None, "the driver has not made the port");
        host.write("class/virtio-ports/vport1p0/name", "\n");
        assert_eq!(host.find(), None, "no hvc0 node yet");
        host.node(HVC);
        assert_eq!(host.find(), Some(host.dev().join(HVC)));
    }
}
