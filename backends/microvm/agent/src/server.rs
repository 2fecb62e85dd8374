//! Serves the host's calls for each container the VM hosts, and reports
//! each process's exit after its output.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{Process, Spec};
use strata_agent::protocol::{
    process_key, read_frame, split_key, Call, Frame, GuestMessage, HostMessage, Reply, Stream, INIT,
};

use crate::cgroup::ContainerCgroup;
use crate::enter::EnterRequest;
use crate::error::{sys, AgentError, Result};
use crate::link::Link;
use crate::rootfs;
use crate::spawn::{ChildEnds, Spawner, Streams};

/// The init process between Create and Start.
struct Pending {
    request: EnterRequest,
    streams: Streams,
    ends: ChildEnds,
}

/// A container the agent hosts.
struct Hosted {
    /// Where its root filesystem is mounted.
    root: PathBuf,
    /// Its spec, for the processes exec'd into it.
    spec: Spec,
    /// Holds its processes and limits them.
    cgroup: ContainerCgroup,
    /// Starts its processes, in its PID namespace.
    spawner: Spawner,
    /// Its init process until Start.
    pending: Option<Pending>,
    /// Its init process's guest pid once started.
    init: Option<i32>,
}

/// A running process.
struct Running {
    pid: i32,
    streams: Streams,
}

#[derive(Default)]
struct State {
    containers: HashMap<String, Hosted>,
    /// Running processes by [`process_key`].
    running: HashMap<String, Running>,
    by_pid: HashMap<i32, String>,
    /// Counts spawns, so the reaper knows a child appeared while it looked.
    spawned: u64,
}

impl State {
    fn hosted(&mut self, container: &str) -> Result<&mut Hosted> {
        self.containers
            .get_mut(container)
            .ok_or_else(|| AgentError::Refused(format!("no container {container:?} in this VM")))
    }

    /// The running init process of `container`.
    fn init_of(&mut self, container: &str) -> Result<i32> {
        let key = process_key(container, INIT);
        let init = self.hosted(container)?.init;
        match init {
            Some(pid) if self.running.contains_key(&key) => Ok(pid),
            _ => Err(AgentError::Refused(format!(
                "container {container:?} is not running"
            ))),
        }
    }
}

/// The agent: its link to the host and its processes.
#[derive(Clone)]
pub struct Agent {
    link: Link,
    state: Arc<Mutex<State>>,
    children: Arc<Condvar>,
}

impl Agent {
    /// An agent that reports through `link`; starts its reaper.
    pub fn new(link: Link) -> Agent {
        let agent = Agent {
            link,
            state: Arc::default(),
            children: Arc::default(),
        };
        let reaper = agent.clone();
        std::thread::spawn(move || reaper.reap());
        agent
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the host's frames from `port` and answers them, for ever.
    pub fn serve(&self, mut port: File) -> ! {
        loop {
            match read_frame::<HostMessage>(&mut port) {
                Ok(Some(Frame::Control(HostMessage::Hello))) => {
                    let kernel = nix::sys::utsname::uname()
                        .map(|u| u.release().to_string_lossy().into_owned())
                        .unwrap_or_default();
                    self.link
                        .send(&Frame::Control(GuestMessage::Ready { kernel }));
                }
                Ok(Some(Frame::Control(HostMessage::Request { id, call }))) => {
                    let shutdown = call == Call::Shutdown;
                    let result = self.call(call).map_err(|e| e.to_string());
                    self.link
                        .send(&Frame::Control(GuestMessage::Reply { id, result }));
                    if shutdown {
                        power_off();
                    }
                }
                Ok(Some(Frame::Data {
                    process,
                    stream: Stream::Stdin,
                    data,
                })) => self.stdin(&process, data),
                Ok(Some(Frame::Data { stream, .. })) => {
                    eprintln!("strata-agent: ignoring {stream:?} data from the host");
                }
                // No host on the other end (yet): the port reads end-of-file.
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    eprintln!("strata-agent: reading from the host: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn call(&self, call: Call) -> Result<Reply> {
        match call {
            Call::Create {
                container,
                disk,
                spec,
                mounts,
                stdin,
            } => {
                let mut state = self.state();
                if state.containers.contains_key(&container) {
                    return Err(AgentError::Refused(format!(
                        "container {container:?} exists already"
                    )));
                }
                let process = spec
                    .process()
                    .clone()
                    .ok_or_else(|| AgentError::Refused("the spec has no process".into()))?;
                let readonly = spec.root().as_ref().and_then(|r| r.readonly());
                let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
                // The VM's hostname is the pod's: every container shares it.
                if let Some(name) = spec.hostname().as_ref().filter(|h| !h.is_empty()) {
                    nix::unistd::sethostname(name)
                        .map_err(sys(format!("setting the hostname {name:?}")))?;
                }
                let root = rootfs::root_of(&container)?;
                let proc_mounts =
                    rootfs::prepare(&root, &disk, readonly.unwrap_or(false), &mounts)?;
                let cgroup = match ContainerCgroup::create(&container, resources) {
                    Ok(cgroup) => cgroup,
                    Err(e) => {
                        let _ = rootfs::remove(&root);
                        return Err(e);
                    }
                };
                let request = EnterRequest {
                    spec: (*spec).clone(),
                    process,
                    root: root.clone(),
                    proc_mounts,
                    init: None,
                };
                let hosted = self.prepare(&container, &cgroup, request, stdin);
                match hosted {
                    Ok((spawner, pending)) => {
                        state.containers.insert(
                            container,
                            Hosted {
                                root,
                                spec: *spec,
                                cgroup,
                                spawner,
                                pending: Some(pending),
                                init: None,
                            },
                        );
                        Ok(Reply::Done)
                    }
                    Err(e) => {
                        let _ = cgroup.destroy();
                        let _ = rootfs::remove(&root);
                        Err(e)
                    }
                }
            }
            Call::Start { container } => {
                let mut state = self.state();
                let hosted = state.hosted(&container)?;
                let Some(pending) = hosted.pending.take() else {
                    return Err(AgentError::Refused(format!(
                        "container {container:?} does not wait to be started"
                    )));
                };
                let pid = hosted.spawner.spawn(pending.request, pending.ends)?;
                hosted.init = Some(pid as i32);
                self.register(
                    &mut state,
                    &process_key(&container, INIT),
                    pid,
                    pending.streams,
                );
                Ok(Reply::Started { pid })
            }
            Call::Exec {
                container,
                exec_id,
                process,
                stdin,
            } => {
                let mut state = self.state();
                let init = state
                    .init_of(&container)
                    .map_err(|e| AgentError::Refused(format!("cannot exec {exec_id:?}: {e}")))?;
                let key = process_key(&container, &exec_id);
                if exec_id.is_empty() || state.running.contains_key(&key) {
                    return Err(AgentError::Refused(format!(
                        "exec id {exec_id:?} is taken or empty"
                    )));
                }
                let hosted = state.hosted(&container)?;
                check_executable(&hosted.root, &process)?;
                let (streams, ends) =
                    Streams::open(&key, process.terminal().unwrap_or(false), stdin, &self.link)?;
                let request = EnterRequest {
                    spec: hosted.spec.clone(),
                    process: *process,
                    root: hosted.root.clone(),
                    proc_mounts: Vec::new(),
                    init: Some(init),
                };
                let pid = hosted.spawner.spawn(request, ends)?;
                self.register(&mut state, &key, pid, streams);
                Ok(Reply::Started { pid })
            }
            Call::Kill {
                container,
                process,
                signal,
                all,
            } => {
                let signal = Signal::try_from(signal).map_err(sys(format!("signal {signal}")))?;
                let mut state = self.state();
                if all {
                    state.hosted(&container)?.cgroup.signal_all(signal)?;
                    return Ok(Reply::Done);
                }
                let Some(running) = state.running.get(&process_key(&container, &process)) else {
                    return Err(AgentError::Refused(format!(
                        "{} is not running",
                        describe(&container, &process)
                    )));
                };
                kill(Pid::from_raw(running.pid), signal)
                    .map_err(sys(format!("sending {signal} to process {}", running.pid)))?;
                Ok(Reply::Done)
            }
            Call::CloseStdin { container, process } => {
                let mut state = self.state();
                if let Some(streams) = streams_of(&mut state, &container, &process) {
                    streams.stdin = None;
                }
                Ok(Reply::Done)
            }
            Call::ResizePty {
                container,
                process,
                width,
                height,
            } => {
                let mut state = self.state();
                let Some(streams) = streams_of(&mut state, &container, &process) else {
                    return Err(AgentError::Refused(format!(
                        "{} is not running",
                        describe(&container, &process)
                    )));
                };
                streams.resize(width, height)?;
                Ok(Reply::Done)
            }
            Call::Stats { container } => {
                let mut state = self.state();
                Ok(Reply::Stats(Box::new(
                    state.hosted(&container)?.cgroup.stats()?,
                )))
            }
            Call::Remove { container } => {
                let mut state = self.state();
                state.hosted(&container)?;
                let hosted = state
                    .containers
                    .remove(&container)
                    .expect("the container was just found");
                drop(state);
                // Nothing may write to the disk once the host reuses it.
                hosted.cgroup.kill_all()?;
                hosted.cgroup.destroy()?;
                rootfs::remove(&hosted.root)?;
                Ok(Reply::Done)
            }
            Call::Shutdown => Ok(Reply::Done),
        }
    }

    /// The spawner of a new container (its processes join `cgroup`) and its
    /// init process, prepared: the executable found, the streams made.
    fn prepare(
        &self,
        container: &str,
        cgroup: &ContainerCgroup,
        request: EnterRequest,
        stdin: bool,
    ) -> Result<(Spawner, Pending)> {
        // The container's processes get a PID namespace of their own, with
        // init as its PID 1.
        let spawner = Spawner::new(cgroup.open_procs()?)?;
        check_executable(&request.root, &request.process)?;
        let (streams, ends) = Streams::open(
            &process_key(container, INIT),
            request.process.terminal().unwrap_or(false),
            stdin,
            &self.link,
        )?;
        Ok((
            spawner,
            Pending {
                request,
                streams,
                ends,
            },
        ))
    }

    fn register(&self, state: &mut State, key: &str, pid: u32, streams: Streams) {
        let pid = pid as i32;
        state
            .running
            .insert(key.to_owned(), Running { pid, streams });
        state.by_pid.insert(pid, key.to_owned());
        state.spawned += 1;
        self.children.notify_all();
    }

    fn stdin(&self, key: &str, data: Vec<u8>) {
        let Some((container, process)) = split_key(key) else {
            return;
        };
        let mut state = self.state();
        if let Some(tx) = streams_of(&mut state, container, process).and_then(|s| s.stdin.as_ref())
        {
            let _ = tx.send(data);
        }
    }

    /// Collects every child of PID 1; reports those that are container processes.
    fn reap(&self) {
        loop {
            let seen = self.state().spawned;
            match waitpid(Pid::from_raw(-1), None) {
                Ok(WaitStatus::Exited(pid, code)) => self.exited(pid.as_raw(), code as u32),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    self.exited(pid.as_raw(), 128 + signal as u32)
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => {
                    // No children: sleep until one is spawned.
                    let state = self.state();
                    if state.spawned == seen {
                        drop(self.children.wait(state));
                    }
                }
            }
        }
    }

    fn exited(&self, pid: i32, code: u32) {
        let mut state = self.state();
        let Some(key) = state.by_pid.remove(&pid) else {
            return;
        };
        let Some(running) = state.running.remove(&key) else {
            return;
        };
        // The kernel ends the rest of the PID namespace with its init.
        drop(state);
        let link = self.link.clone();
        std::thread::spawn(move || {
            running.streams.drain();
            link.send(&Frame::Control(GuestMessage::Exit { process: key, code }));
        });
    }
}

/// Checks early, so that the host hears it as the call's error, that
/// `process` of a container finds its executable inside the container's
/// root filesystem `root`.
fn check_executable(root: &Path, process: &Process) -> Result<()> {
    let program = process
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .ok_or_else(|| AgentError::Refused("process.args is empty".into()))?;
    let cwd = process.cwd().to_string_lossy();
    rootfs::find_executable(
        root,
        program,
        &cwd,
        process.env().as_deref().unwrap_or_default(),
    )
    .map(drop)
}

/// Names a process in messages.
fn describe(container: &str, process: &str) -> String {
    if process == INIT {
        format!("the init process of container {container:?}")
    } else {
        format!("exec {process:?} of container {container:?}")
    }
}

fn streams_of<'a>(state: &'a mut State, container: &str, process: &str) -> Option<&'a mut Streams> {
    if process == INIT {
        if let Some(pending) = state
            .containers
            .get_mut(container)
            .and_then(|h| h.pending.as_mut())
        {
            return Some(&mut pending.streams);
        }
    }
    state
        .running
        .get_mut(&process_key(container, process))
        .map(|r| &mut r.streams)
}

/// Flushes the disks and powers the VM off, which ends the VMM process.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached if the kernel refused; PID 1 exiting panics the guest,
    // which (with panic=-1 and no reboot) also ends the VMM.
    std::process::exit(1)
}
