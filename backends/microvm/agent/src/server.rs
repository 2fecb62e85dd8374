//! Serves the host's calls, and reports each process's exit after its output.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Process;
use strata_agent::protocol::{
    read_frame, Call, Frame, GuestMessage, HostMessage, Reply, Stream, INIT,
};

use crate::error::{sys, AgentError, Result};
use crate::link::Link;
use crate::rootfs::{self, ProcMount};
use crate::spawn::{ChildEnds, Spawner, Streams};

/// The init process between Create and Start.
struct Pending {
    process: Process,
    proc_mounts: Vec<ProcMount>,
    executable: String,
    streams: Streams,
    ends: ChildEnds,
}

/// A running process.
struct Running {
    pid: i32,
    streams: Streams,
}

#[derive(Default)]
struct State {
    /// Starts the container's processes; made at Create.
    spawner: Option<Spawner>,
    pending: Option<Pending>,
    running: HashMap<String, Running>,
    by_pid: HashMap<i32, String>,
    /// Counts spawns, so the reaper knows a child appeared while it looked.
    spawned: u64,
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
                process,
                hostname,
                readonly,
                mounts,
                stdin,
            } => {
                let mut state = self.state();
                if state.spawner.is_some() {
                    return Err(AgentError::Refused("the container exists already".into()));
                }
                let proc_mounts = rootfs::prepare(readonly, &mounts)?;
                // The container's processes get a PID namespace of their own,
                // with init as its PID 1.
                let spawner = Spawner::new()?;
                if let Some(name) = hostname.filter(|h| !h.is_empty()) {
                    nix::unistd::sethostname(&name)
                        .map_err(sys(format!("setting the hostname {name:?}")))?;
                }
                let executable = self.executable(&process)?;
                let (streams, ends) =
                    Streams::open(INIT, process.terminal().unwrap_or(false), stdin, &self.link)?;
                state.spawner = Some(spawner);
                state.pending = Some(Pending {
                    process: *process,
                    proc_mounts,
                    executable,
                    streams,
                    ends,
                });
                Ok(Reply::Done)
            }
            Call::Start => {
                let mut state = self.state();
                let Some(pending) = state.pending.take() else {
                    return Err(AgentError::Refused(
                        "no container waits to be started".into(),
                    ));
                };
                let spawner = state.spawner.as_ref().expect("made with the pending init");
                let pid = spawner.spawn(
                    pending.process,
                    pending.executable,
                    pending.ends,
                    pending.proc_mounts,
                )?;
                self.register(&mut state, INIT, pid, pending.streams);
                Ok(Reply::Started { pid })
            }
            Call::Exec {
                exec_id,
                process,
                stdin,
            } => {
                let mut state = self.state();
                if !state.running.contains_key(INIT) {
                    return Err(AgentError::Refused(format!(
                        "cannot exec {exec_id}: the container is not running"
                    )));
                }
                if exec_id.is_empty() || state.running.contains_key(&exec_id) {
                    return Err(AgentError::Refused(format!(
                        "exec id {exec_id:?} is taken or empty"
                    )));
                }
                let executable = self.executable(&process)?;
                let (streams, ends) = Streams::open(
                    &exec_id,
                    process.terminal().unwrap_or(false),
                    stdin,
                    &self.link,
                )?;
                let spawner = state.spawner.as_ref().expect("made before init ran");
                let pid = spawner.spawn(*process, executable, ends, Vec::new())?;
                self.register(&mut state, &exec_id, pid, streams);
                Ok(Reply::Started { pid })
            }
            Call::Kill {
                process,
                signal,
                all,
            } => {
                let signal = Signal::try_from(signal).map_err(sys(format!("signal {signal}")))?;
                if all {
                    // From PID 1, -1 reaches every process but the agent itself.
                    return match kill(Pid::from_raw(-1), signal) {
                        Ok(()) | Err(Errno::ESRCH) => Ok(Reply::Done),
                        Err(e) => Err(sys(format!("sending {signal} to every process"))(e)),
                    };
                }
                let state = self.state();
                let Some(running) = state.running.get(&process) else {
                    return Err(AgentError::Refused(format!(
                        "{} is not running",
                        describe(&process)
                    )));
                };
                kill(Pid::from_raw(running.pid), signal)
                    .map_err(sys(format!("sending {signal} to process {}", running.pid)))?;
                Ok(Reply::Done)
            }
            Call::CloseStdin { process } => {
                let mut state = self.state();
                if let Some(streams) = streams_of(&mut state, &process) {
                    streams.stdin = None;
                }
                Ok(Reply::Done)
            }
            Call::ResizePty {
                process,
                width,
                height,
            } => {
                let mut state = self.state();
                let Some(streams) = streams_of(&mut state, &process) else {
                    return Err(AgentError::Refused(format!(
                        "{} is not running",
                        describe(&process)
                    )));
                };
                streams.resize(width, height)?;
                Ok(Reply::Done)
            }
            Call::Stats => Ok(Reply::Stats(crate::stats::read()?)),
            Call::Shutdown => Ok(Reply::Done),
        }
    }

    fn executable(&self, process: &Process) -> Result<String> {
        let program = process
            .args()
            .as_ref()
            .and_then(|a| a.first())
            .ok_or_else(|| AgentError::Refused("process.args is empty".into()))?;
        let cwd = process.cwd().to_string_lossy();
        rootfs::find_executable(program, &cwd, process.env().as_deref().unwrap_or_default())
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

    fn stdin(&self, process: &str, data: Vec<u8>) {
        let mut state = self.state();
        if let Some(tx) = streams_of(&mut state, process).and_then(|s| s.stdin.as_ref()) {
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

/// Names a process in messages.
fn describe(process: &str) -> String {
    if process == INIT {
        "the container's init process".into()
    } else {
        format!("exec {process:?}")
    }
}

fn streams_of<'a>(state: &'a mut State, process: &str) -> Option<&'a mut Streams> {
    if process == INIT {
        if let Some(pending) = state.pending.as_mut() {
            return Some(&mut pending.streams);
        }
    }
    state.running.get_mut(process).map(|r| &mut r.streams)
}

/// Flushes the disks and powers the VM off, which ends the VMM process.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached if the kernel refused; PID 1 exiting panics the guest,
    // which (with panic=-1 and no reboot) also ends the VMM.
    std::process::exit(1)
}
