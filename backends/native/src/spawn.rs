//! Starts the init helper and follows its reports.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{ContainerState, Hooks, LinuxSeccomp, Spec, State};
use strata_backend::{reaper, Error, Result, Stdio};
use strata_cgroups::Cgroup;
use strata_hooks::HookKind;
use tokio::runtime::Handle;

use crate::channel::Channel;
use crate::host::{Host, ShimHost};
use crate::interposer::{take_fd, Interposer, Target};
use crate::process::NativeProcess;
use crate::protocol::{container_state, Report, Request, CHANNEL_FD_ENV};
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

/// What the runtime side contributes while the helper builds a process:
/// the id maps of a new user namespace, the hooks that run in the runtime's
/// namespaces, and the seccomp agent that gets the notification listener.
#[derive(Debug, Clone)]
pub(crate) struct Support {
    /// The container id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The spec's annotations.
    pub annotations: Option<HashMap<String, String>>,
    /// Written when the helper reports a new user namespace.
    pub id_maps: Option<IdMaps>,
    /// `prestart` and `createRuntime` run from these when asked.
    pub hooks: Option<Hooks>,
    /// Where a notification listener goes.
    pub seccomp: Option<LinuxSeccomp>,
    /// How many descriptors from 3 on the process inherits from the
    /// runtime (runc's `--preserve-fds`).
    pub preserve_fds: u32,
    /// The container's spec, for the interposer.
    pub spec: Arc<Spec>,
    /// The interposer that supervises every process of the container.
    pub interposer: Option<Arc<dyn Interposer>>,
}

impl Support {
    /// What every process of the container gets from the runtime side: its
    /// identity for the state, and the seccomp profile's listener target.
    /// Id maps and hooks concern the init process only and are left out.
    pub fn new(
        id: &str,
        bundle: &Path,
        spec: &Spec,
        preserve_fds: u32,
        interposer: Option<Arc<dyn Interposer>>,
    ) -> Support {
        Support {
            id: id.to_owned(),
            bundle: bundle.to_owned(),
            annotations: spec.annotations().clone(),
            id_maps: None,
            hooks: None,
            seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
            preserve_fds,
            spec: Arc::new(spec.clone()),
            interposer,
        }
    }

    /// The interposer's filter, for the helper to load.
    pub fn interposer_filter(&self) -> Option<LinuxSeccomp> {
        self.interposer.as_ref().map(|i| i.filter().clone())
    }

    /// Takes the interposer's listener, descriptor `fd` of process `pid`,
    /// and hands it to the interposer.
    fn supervise(&self, pid: i32, fd: i32, cgroup: &Cgroup) -> Result<()> {
        let interposer = self.interposer.as_ref().ok_or_else(|| {
            Error::Process("an interposer listener in a container without an interposer".into())
        })?;
        let listener = take_fd(pid, fd)?;
        let target = Target {
            id: &self.id,
            pid,
            spec: &self.spec,
            cgroup,
        };
        interposer.supervise(target, listener)
    }

    /// The container's state as hooks and seccomp agents see it.
    pub fn state(&self, pid: i32, status: ContainerState) -> State {
        container_state(&self.id, &self.bundle, &self.annotations, pid, status)
    }

    /// Runs the `prestart` and `createRuntime` hooks, in that order.
    fn run_create_runtime_hooks(&self, host: &dyn Host, pid: i32) -> Result<()> {
        let Some(hooks) = &self.hooks else {
            return Ok(());
        };
        let state = self.state(pid, ContainerState::Creating);
        for kind in [HookKind::Prestart, HookKind::CreateRuntime] {
            host.run_hooks(kind, hooks, &state)?;
        }
        Ok(())
    }

    /// Hands a notification listener to the agent at `listenerPath`.
    fn send_listener(&self, fd: &OwnedFd, pid: i32) -> Result<()> {
        let seccomp = self
            .seccomp
            .as_ref()
            .ok_or_else(|| Error::Process("a seccomp listener without a profile".into()))?;
        let path = seccomp.listener_path().as_ref().ok_or_else(|| {
            Error::Process("a seccomp listener without linux.seccomp.listenerPath".into())
        })?;
        let state =
            strata_seccomp::process_state(seccomp, pid, self.state(pid, ContainerState::Creating));
        strata_seccomp::send_listener(path, fd.as_fd(), &state)
            .map_err(|e| Error::Process(e.to_string()))
    }
}

/// Starts a container process through the helper, with its streams connected
/// as `stdio` says. On failure the process, if it was forked, is killed.
pub(crate) async fn launch(
    helper: &Path,
    request: Request,
    stdio: &Stdio,
    cgroup: Arc<Cgroup>,
    support: Support,
) -> Result<NativeProcess> {
    let (mut streams, child_stdio) = StreamCopier::open(stdio)?;
    let helper = helper.to_owned();
    let host = ShimHost {
        runtime: Handle::current(),
    };
    let spawned = tokio::task::spawn_blocking(move || {
        run_helper(&helper, &request, child_stdio, &cgroup, &support, &host)
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
/// and collects the reports, doing what the helper asks of the runtime on
/// the way. Blocking: call from a blocking thread.
pub(crate) fn run_helper(
    helper: &Path,
    request: &Request,
    stdio: ChildStdio,
    cgroup: &Cgroup,
    support: &Support,
    host: &dyn Host,
) -> Spawned {
    let mut pid = None;
    let mut terminal = None;
    let mut helper_process = None;
    let result = (|| {
        let (mut channel, theirs) =
            Channel::pair().map_err(|e| Error::io("creating the init channel", e))?;
        let child = spawn(helper, stdio, theirs, support.preserve_fds)?;
        let helper_pid = child.id() as i32;
        helper_process = Some(child);
        if let Err(e) = cgroup.add_process(helper_pid) {
            let _ = kill(Pid::from_raw(helper_pid), Signal::SIGKILL);
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
            let (report, mut fds) = match channel.recv_with_fds::<Report>() {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(e) => {
                    error.get_or_insert(format!("reading from the init helper: {e}"));
                    break;
                }
            };
            // Work asked of the runtime; on failure the channel is dropped,
            // which stops the waiting helper.
            let asked = match report {
                Report::Pid(p) => {
                    pid = Some(p);
                    continue;
                }
                Report::Terminal => {
                    terminal = fds.pop();
                    continue;
                }
                Report::Ready => {
                    ready = true;
                    continue;
                }
                Report::Error(message) => {
                    error = Some(message);
                    continue;
                }
                Report::UserNamespace => match &support.id_maps {
                    Some(maps) => maps.write(helper_pid),
                    None => Err(Error::Process("a user namespace without id maps".into())),
                },
                Report::CreateRuntimeHooks => {
                    support.run_create_runtime_hooks(host, pid.unwrap_or(0))
                }
                Report::InterposerListener(fd) => support.supervise(pid.unwrap_or(0), fd, cgroup),
                Report::SeccompListener => match fds.pop() {
                    Some(fd) => support.send_listener(&fd, pid.unwrap_or(0)),
                    None => Err(Error::Process("the seccomp listener did not arrive".into())),
                },
            };
            if let Err(e) = asked {
                error.get_or_insert(e.to_string());
                break;
            }
            channel
                .send(&Request::Continue)
                .map_err(|e| Error::io("resuming the init helper", e))?;
        }
        match (error, ready, pid) {
            (Some(message), _, _) => Err(Error::Process(message)),
            (None, true, Some(_)) => Ok(()),
            (None, _, _) => Err(Error::Process(
                "the init helper exited without reporting".into(),
            )),
        }
    })();
    // The channel is closed now, so the helper has exited or is exiting.
    if let Some(child) = helper_process {
        host.dispose(child);
    }
    Spawned {
        pid,
        result,
        terminal,
    }
}

/// Starts the helper with `stdio` as 0, 1 and 2, descriptors 3 to
/// 3 + `preserve_fds` - 1 passed through, and the channel just above them.
fn spawn(
    helper: &Path,
    stdio: ChildStdio,
    channel: OwnedFd,
    preserve_fds: u32,
) -> Result<std::process::Child> {
    let target = 3 + preserve_fds as i32;
    let mut command = Command::new(helper);
    command
        .arg("init")
        .env_clear()
        .env(CHANNEL_FD_ENV, target.to_string())
        .stdin(stdio.stdin)
        .stdout(stdio.stdout)
        .stderr(stdio.stderr);
    strata_backend::child::pass_fd(&mut command, &channel, target);
    let child = command
        .spawn()
        .map_err(|e| Error::path("starting the init helper", helper, e))?;
    drop(channel);
    Ok(child)
}
