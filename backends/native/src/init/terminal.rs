//! Gives a process a terminal: a new pseudo-terminal from the container's own
//! devpts, whose master side goes to the runtime over the channel.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};
use oci_spec::runtime::Process;

use super::{InitError, Result};
use crate::channel::Channel;
use crate::protocol::Report;

nix::ioctl_write_ptr_bad!(set_window_size, libc::TIOCSWINSZ, Winsize);

/// Opens a terminal, makes it the calling process's controlling terminal
/// and standard streams, and sends the master side to the runtime.
pub(crate) fn attach(process: &Process, channel: &mut Channel) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| InitError::sys("opening /dev/ptmx", e))?;
    grantpt(&master).map_err(|e| InitError::sys("grantpt", e))?;
    unlockpt(&master).map_err(|e| InitError::sys("unlockpt", e))?;
    let name = ptsname_r(&master).map_err(|e| InitError::sys("ptsname", e))?;
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open(&name)
        .map_err(|e| InitError::io(format!("opening {name}"), e))?
        .into();
    if let Some(size) = process.console_size() {
        let winsize = Winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: `slave` is an open terminal and `winsize` a valid struct
        // that outlives the call.
        unsafe { set_window_size(slave.as_raw_fd(), &winsize) }
            .map_err(|e| InitError::sys("setting the console size", e))?;
    }
    nix::unistd::setsid().map_err(|e| InitError::sys("setsid", e))?;
    // SAFETY: TIOCSCTTY takes an integer argument; `slave` is an open terminal.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(InitError::io(
            "making the terminal controlling",
            std::io::Error::last_os_error(),
        ));
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(InitError::io(
                "attaching the terminal",
                std::io::Error::last_os_error(),
            ));
        }
    }
    channel
        .send_with_fds(&Report::Terminal, &[master.as_raw_fd()])
        .map_err(|e| InitError::io("sending the terminal", e))?;
    Ok(())
}

/// `O_NOCTTY` for `OpenOptions`, so opening the slave does not make it the
/// controlling terminal before setsid.
trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
    }
}
