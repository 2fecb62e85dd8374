//! Starts the init helper and follows its reports.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use std::sync::Arc;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use strata_backend::{reaper, Error, Result, Stdio};
use strata_cgroups::Cgroup;

use crate::channel::Channel;
use crate::protocol::{Report, Request, CHANNEL_FD};
use crate::process::NativeProcess;
use crate::stdio::{ChildStdio, StreamCopier};

/// How long the helper may take to build a container before it is given up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// The outcome of running the helper: the pid it forked (if it got that far)
/// and whether setup succeeded.
pub(crate) struct Spawned {
    /// The host pid of the container process.
    pub pid: Option<i32>,
    /// `Ok` once the process reported ready.
    pub result: Result<()>,
    /// The master side of the process's terminal, when it asked for one.
    pub terminal: Option<OwnedFd>,
}

/// The uid and gid maps of a new user namespace, as the kernel's
/// `/proc/PID/{uid,gid}_map` files take them.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdMaps {
    /// Lines of `uid_map`.
    pub uid: String,
    /// Lines of `gid_map`.
    pub gid: String,
}

impl IdMaps {
    fn write(&self, pid: i32) -> Result<()> {
        for (file, text) in [("uid_map", &self.uid), ("gid_map", &self.gid)] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, text)
                .map_err(|e| Error::path(&format!("writing {text:?} to"), path, e))?;
        }
        Ok(())
    }
}

/// Starts a container process through the helper, with its streams connected
/// as `stdio` says. On failure the process, if it was forked, is killed.
pub(crate) async fn launch(
    helper: &Path,
    request: Request,
    stdio: &Stdio,
    cgroup: Arc<Cgroup>,
    id_maps: Option<IdMaps>,
) -> Result<NativeProcess> {
    let (mut streams, child_stdio) = StreamCopier::open(stdio)?;
    let helper = helper.to_owned();
    let spawned = tokio::task::spawn_blocking(move || {
        run_helper(&helper, &request, child_stdio, &cgroup, id_maps.as_ref())
    })
    .await
    .map_err(|e| Error::Process(format!("the init helper task failed: {e}")))?;
    let attached = match spawned.terminal {
        Some(master) => streams.attach_terminal(master),
        None => Ok(()),
    };
    match (spawned.result.and(attached), spawned.pid) {
        (Ok(()), Some(pid)) => Ok(NativeProcess::watch(pid, streams)),
        (result, pid) => {
            if let Some(pid) = pid {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                drop(reaper::watch(pid));
            }
            Err(result
                .err()
                .unwrap_or_else(|| Error::Process("the init helper reported no pid".into())))
        }
    }
}

/// Runs `helper init` with `stdio`, places it in `cgroup`, sends `request`,
/// and collects the reports, writing the id maps when a user namespace asks
/// for them. Blocking: call from a blocking thread.
fn run_helper(
    helper: &Path,
    request: &Request,
    stdio: ChildStdio,
    cgroup: &Cgroup,
    id_maps: Option<&IdMaps>,
) -> Spawned {
    let mut pid = None;
    let mut terminal = None;
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
            match channel.recv_with_fds::<Report>() {
                Ok(Some((Report::Pid(p), _))) => pid = Some(p),
                Ok(Some((Report::UserNamespace, _))) => {
                    let maps = id_maps.ok_or_else(|| Error::Process("a user namespace without id maps".into()))?;
                    if let Err(e) = maps.write(helper_pid) {
                        error.get_or_insert(e.to_string());
                        break;
                    }
                    channel.send(&Request::Continue).map_err(|e| Error::io("resuming the init helper", e))?;
                }
                Ok(Some((Report::Terminal, mut fds))) => terminal = fds.pop(),
                Ok(Some((Report::Ready, _))) => ready = true,
                Ok(Some((Report::Error(message), _))) => error = Some(message),
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
    Spawned { pid, result, terminal }
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
