//! Finds the virtio-serial port the host talks to the agent on.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use strata_agent::protocol::PORT_NAME;

use crate::error::{io, AgentError, Result};

/// How long the port may take to appear after its driver was loaded.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the port named [`PORT_NAME`] for reading and writing, waiting for
/// the driver to create it.
pub fn open() -> Result<File> {
    let deadline = Instant::now() + APPEAR_TIMEOUT;
    loop {
        if let Some(device) = find()? {
            return std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&device)
                .map_err(io(format!("opening {}", device.display())));
        }
        if Instant::now() >= deadline {
            return Err(AgentError::Refused(format!(
                "no virtio-serial port named {PORT_NAME} appeared in {APPEAR_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The device node of the port named [`PORT_NAME`], if it exists yet.
fn find() -> Result<Option<PathBuf>> {
    let ports = match std::fs::read_dir("/sys/class/virtio-ports") {
        Ok(ports) => ports,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("listing /sys/class/virtio-ports")(e)),
    };
    for port in ports {
        let port = port.map_err(io("listing /sys/class/virtio-ports"))?;
        let name = std::fs::read_to_string(port.path().join("name")).unwrap_or_default();
        let device = PathBuf::from("/dev").join(port.file_name());
        if name.trim() == PORT_NAME && device.exists() {
            return Ok(Some(device));
        }
    }
    Ok(None)
}
