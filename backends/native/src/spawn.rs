//! Starts the init helper and follows its reports.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use strata_backend::{reaper, Error, Result};
use strata_cgroups::Cgroup;

use crate::channel::Channel;
use crate::protocol::{Report, Request, CHANNEL_FD};
use crate::stdio::ChildStdio;

/// How long the helper may take to build a container before it is given up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// The outcome of running the helper: the pid it forked (if it got that far)
/// and whether setup succeeded.
pub(crate) struct Spawned {
    /// The host pid of the container process.
    pub pid: Option<i32>,
    /// `Ok` once the process reported ready.
    pub result: Result<()>,
}

/// Runs `helper init` with `stdio`, places it in `cgroup`, sends `request`,
/// and collects the reports. Blocking: call from a blocking thread.
pub(crate) fn run_helper(
    helper: &Path,
    request: &Request,
    stdio: ChildStdio,
    cgroup: &Cgroup,
) -> Spawned {
    let mut pid = None;
    let result = (|| {
        let (mut channel, theirs) =
            Channel::pair().map_err(|e| Error::io("creating the init channel", e))?;
        let child = spawn(helper, stdio, theirs)?;
        let helper_pid = child.id() as i32;
        // The reaper collects the helper's exit; we only need the reports.
        drop(reaper::watch(helper_pid));
        if let Err(e) = cgroup.add_process(helper_pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(helper_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(Error::Process(format!(
                "placing the init helper in its cgroup: {e}"
            )));
        }
        channel
            .set_timeout(Some(SETUP_TIMEOUT))
            .map_err(|e| Error::io("setting the init channel timeout", e))?;
        channel
            .send(request)
            .map_err(|e| Error::io("sending the init request", e))?;
        let mut ready = false;
        let mut error = None;
        loop {
            match channel.recv::<Report>() {
                Ok(Some(Report::Pid(p))) => pid = Some(p),
                Ok(Some(Report::Ready)) => ready = true,
                Ok(Some(Report::Error(message))) => error = Some(message),
                Ok(None) => break,
                Err(e) => {
                    error.get_or_insert(format!("reading from the init helper: {e}"));
                    break;
                }
            }
        }
        match (error, ready, pid) {
            (Some(message), _, _) => Err(Error::Process(message)),
            (None, true, Some(_)) => Ok(()),
            (None, _, _) => Err(Error::Process(
                "the init helper exited without reporting".into(),
            )),
        }
    })();
    Spawned { pid, result }
}

fn spawn(helper: &Path, stdio: ChildStdio, channel: OwnedFd) -> Result<std::process::Child> {
    let mut command = Command::new(helper);
    command
        .arg("init")
        .env_clear()
        .stdin(stdio.stdin)
        .stdout(stdio.stdout)
        .stderr(stdio.stderr);
    let raw = channel.as_raw_fd();
    // SAFETY: the closure runs between fork and exec and calls only dup2 and
    // fcntl, which are async-signal-safe; it touches no locks or allocations.
    unsafe {
        command.pre_exec(move || {
            if raw == CHANNEL_FD {
                if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, CHANNEL_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| Error::path("starting the init helper", helper, e))?;
    drop(channel);
    Ok(child)
}
