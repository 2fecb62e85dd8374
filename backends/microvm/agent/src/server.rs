//! Serves the host's calls for each container the VM hosts: the agent
//! service's methods over the [`rpc`](strata_agent::rpc) loop.

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
use protobuf::Message;
use strata_agent::protocol::agent::{
    ContainerRequest, CreateContainerRequest, Empty, ExecProcessRequest, Exit, HelloResponse,
    Output, ProcessRequest, ResizePtyRequest, SignalProcessRequest, Started, StatsResponse,
    WriteStdinRequest,
};
use strata_agent::protocol::{process_key, INIT};
use strata_agent::rpc::{self, Handler};
use ttrpc::proto::{Code, Status};

use crate::cgroup::ContainerCgroup;
use crate::enter::EnterRequest;
use crate::error::{sys, AgentError, Result};
use crate::rootfs;
use crate::spawn::{ChildEnds, Spawner, Streams};

/// The init process between Create and Start.
struct Pending {
    request: EnterRequest,
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
}

/// A process of a container, from its creation until the host has waited
/// for it: its streams, its guest pid once started, its end once known.
struct Proc {
    streams: Streams,
    pid: Mutex<Option<i32>>,
    /// The exit code once the process exited and its output was drained,
    /// or why it never will.
    end: Mutex<Option<std::result::Result<u32, String>>>,
    ended: Condvar,
}

impl Proc {
    fn new(streams: Streams) -> Arc<Proc> {
        Arc::new(Proc {
            streams,
            pid: Mutex::new(None),
            end: Mutex::new(None),
            ended: Condvar::new(),
        })
    }

    fn pid(&self) -> Option<i32> {
        *self.pid.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The running process's pid: started and not yet ended.
    fn running(&self) -> Option<i32> {
        let ended = self.end.lock().unwrap_or_else(|p| p.into_inner()).is_some();
        self.pid().filter(|_| !ended)
    }

    fn finish(&self, end: std::result::Result<u32, String>) {
        *self.end.lock().unwrap_or_else(|p| p.into_inner()) = Some(end);
        self.ended.notify_all();
    }

    /// Waits for the end, then until the host has read all the output.
    fn wait(&self) -> std::result::Result<u32, String> {
        let mut end = self.end.lock().unwrap_or_else(|p| p.into_inner());
        let end = loop {
            match &*end {
                Some(e) => break e.clone(),
                None => end = self.ended.wait(end).unwrap_or_else(|p| p.into_inner()),
            }
        };
        if end.is_ok() {
            self.streams.wait_read();
        }
        end
    }
}

#[derive(Default)]
struct State {
    containers: HashMap<String, Hosted>,
    /// Processes by [`process_key`], until waited for.
    procs: HashMap<String, Arc<Proc>>,
    by_pid: HashMap<i32, Arc<Proc>>,
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
        self.hosted(container)?;
        self.procs
            .get(&process_key(container, INIT))
            .and_then(|p| p.running())
            .ok_or_else(|| AgentError::Refused(format!("container {container:?} is not running")))
    }

    fn proc(&self, container: &str, exec: &str) -> Result<Arc<Proc>> {
        self.procs
            .get(&process_key(container, exec))
            .cloned()
            .ok_or_else(|| AgentError::Refused(format!("{} is unknown", describe(container, exec))))
    }
}

/// The agent: its containers and processes.
#[derive(Clone)]
pub struct Agent {
    state: Arc<Mutex<State>>,
    children: Arc<Condvar>,
}

impl Agent {
    /// An agent with no container yet; starts its reaper.
    pub fn launch() -> Agent {
        let agent = Agent {
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

    /// Serves the host's calls read from `port`, answering on `writer`,
    /// for ever.
    pub fn serve(self, mut port: File, writer: File) -> ! {
        let (writer, agent) = (Arc::new(Mutex::new(writer)), Arc::new(self));
        loop {
            if let Err(e) = rpc::serve(&mut port, writer.clone(), agent.clone()) {
                eprintln!("strata-agent: reading from the host: {e}");
            }
            // No host on the other end (yet): the port reads end-of-file.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn hello(&self, _: Empty) -> Result<HelloResponse> {
        let mut hello = HelloResponse::new();
        hello.kernel_release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(hello)
    }

    fn create(&self, call: CreateContainerRequest) -> Result<Empty> {
        let container = call.container_id;
        let spec: Spec = serde_json::from_slice(&call.spec_json)
            .map_err(|e| AgentError::Refused(format!("decoding the spec: {e}")))?;
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
            rootfs::prepare(&root, &call.disk, readonly.unwrap_or(false), &call.mounts)?;
        let cgroup = match ContainerCgroup::create(&container, resources) {
            Ok(cgroup) => cgroup,
            Err(e) => {
                let _ = rootfs::remove(&root);
                return Err(e);
            }
        };
        let request = EnterRequest {
            spec: spec.clone(),
            process,
            root: root.clone(),
            proc_mounts,
            init: None,
        };
        match prepare(&cgroup, request, call.stdin) {
            Ok((spawner, pending, streams)) => {
                state
                    .procs
                    .insert(process_key(&container, INIT), Proc::new(streams));
                state.containers.insert(
                    container,
                    Hosted {
                        root,
                        spec,
                        cgroup,
                        spawner,
                        pending: Some(pending),
                    },
                );
                Ok(Empty::new())
            }
            Err(e) => {
                let _ = cgroup.destroy();
                let _ = rootfs::remove(&root);
                Err(e)
            }
        }
    }

    fn start(&self, call: ContainerRequest) -> Result<Started> {
        let container = call.container_id;
        let mut state = self.state();
        state.hosted(&container)?;
        let proc = state.proc(&container, INIT)?;
        let hosted = state.hosted(&container)?;
        let Some(pending) = hosted.pending.take() else {
            return Err(AgentError::Refused(format!(
                "container {container:?} does not wait to be started"
            )));
        };
        let pid = hosted.spawner.spawn(pending.request, pending.ends)?;
        self.register(&mut state, proc, pid);
        Ok(started(pid))
    }

    fn exec(&self, call: ExecProcessRequest) -> Result<Started> {
        let (container, exec_id) = (call.container_id, call.exec_id);
        let process: Process = serde_json::from_slice(&call.process_json)
            .map_err(|e| AgentError::Refused(format!("decoding the process: {e}")))?;
        let mut state = self.state();
        let init = state
            .init_of(&container)
            .map_err(|e| AgentError::Refused(format!("cannot exec {exec_id:?}: {e}")))?;
        let key = process_key(&container, &exec_id);
        if exec_id.is_empty() || state.procs.contains_key(&key) {
            return Err(AgentError::Refused(format!(
                "exec id {exec_id:?} is taken or empty"
            )));
        }
        let hosted = state.hosted(&container)?;
        check_executable(&hosted.root, &process)?;
        let (streams, ends) = Streams::open(process.terminal().unwrap_or(false), call.stdin)?;
        let request = EnterRequest {
            spec: hosted.spec.clone(),
            process,
            root: hosted.root.clone(),
            proc_mounts: Vec::new(),
            init: Some(init),
        };
        let pid = hosted.spawner.spawn(request, ends)?;
        let proc = Proc::new(streams);
        state.procs.insert(key, proc.clone());
        self.register(&mut state, proc, pid);
        Ok(started(pid))
    }

    fn signal(&self, call: SignalProcessRequest) -> Result<Empty> {
        let (container, exec) = (&call.container_id, &call.exec_id);
        let signal = i32::try_from(call.signal)
            .map_err(|_| AgentError::Refused(format!("signal {} out of range", call.signal)))?;
        let signal = Signal::try_from(signal).map_err(sys(format!("signal {signal}")))?;
        let mut state = self.state();
        if call.all {
            state.hosted(container)?.cgroup.signal_all(signal)?;
            return Ok(Empty::new());
        }
        let Some(pid) = state.proc(container, exec).ok().and_then(|p| p.running()) else {
            return Err(AgentError::Refused(format!(
                "{} is not running",
                describe(container, exec)
            )));
        };
        kill(Pid::from_raw(pid), signal)
            .map_err(sys(format!("sending {signal} to process {pid}")))?;
        Ok(Empty::new())
    }

    fn close_stdin(&self, call: ProcessRequest) -> Result<Empty> {
        if let Ok(proc) = self.state().proc(&call.container_id, &call.exec_id) {
            proc.streams.close_stdin();
        }
        Ok(Empty::new())
    }

    fn write_stdin(&self, call: WriteStdinRequest) -> Result<Empty> {
        let proc = self.state().proc(&call.container_id, &call.exec_id)?;
        proc.streams.write_stdin(call.data);
        Ok(Empty::new())
    }

    fn resize(&self, call: ResizePtyRequest) -> Result<Empty> {
        let proc = self.state().proc(&call.container_id, &call.exec_id)?;
        if proc.end.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Err(AgentError::Refused(format!(
                "{} is not running",
                describe(&call.container_id, &call.exec_id)
            )));
        }
        let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
        proc.streams.resize(clamp(call.width), clamp(call.height))?;
        Ok(Empty::new())
    }

    fn stats(&self, call: ContainerRequest) -> Result<StatsResponse> {
        let stats = self.state().hosted(&call.container_id)?.cgroup.stats()?;
        let mut response = StatsResponse::new();
        response.stats_json = serde_json::to_vec(&stats)
            .map_err(|e| AgentError::Refused(format!("encoding the statistics: {e}")))?;
        Ok(response)
    }

    fn remove(&self, call: ContainerRequest) -> Result<Empty> {
        let container = call.container_id;
        let mut state = self.state();
        state.hosted(&container)?;
        let hosted = state
            .containers
            .remove(&container)
            .expect("the container was just found");
        // A process that never ran (an init process not started, or whose
        // start failed) has no exit to wait for: it ends here.
        let prefix = process_key(&container, "");
        let never_ran: Vec<String> = state
            .procs
            .iter()
            .filter(|(key, proc)| key.starts_with(&prefix) && proc.pid().is_none())
            .map(|(key, _)| key.clone())
            .collect();
        for key in never_ran {
            if let Some(proc) = state.procs.remove(&key) {
                proc.streams.abandon();
                proc.finish(Err(format!(
                    "container {container:?} was removed before {key:?} ran"
                )));
            }
        }
        drop(state);
        // Nothing may write to the disk once the host reuses it.
        hosted.cgroup.kill_all()?;
        hosted.cgroup.destroy()?;
        rootfs::remove(&hosted.root)?;
        Ok(Empty::new())
    }

    fn read(&self, call: ProcessRequest, stderr: bool) -> Result<Output> {
        let proc = self.state().proc(&call.container_id, &call.exec_id)?;
        let stream = if stderr {
            proc.streams.stderr.as_ref()
        } else {
            Some(&proc.streams.stdout)
        };
        let mut output = Output::new();
        // A terminal has no separate error stream: it ends at once.
        match stream.and_then(|s| s.read()) {
            Some(data) => output.data = data,
            None => output.eof = true,
        }
        Ok(output)
    }

    fn wait(&self, call: ProcessRequest) -> Result<Exit> {
        let key = process_key(&call.container_id, &call.exec_id);
        let proc = self.state().proc(&call.container_id, &call.exec_id)?;
        let end = proc.wait();
        let mut state = self.state();
        if state.procs.get(&key).is_some_and(|p| Arc::ptr_eq(p, &proc)) {
            state.procs.remove(&key);
        }
        let mut exit = Exit::new();
        exit.code = end.map_err(AgentError::Refused)?;
        Ok(exit)
    }

    fn register(&self, state: &mut State, proc: Arc<Proc>, pid: u32) {
        let pid = pid as i32;
        *proc.pid.lock().unwrap_or_else(|p| p.into_inner()) = Some(pid);
        state.by_pid.insert(pid, proc);
        state.spawned += 1;
        self.children.notify_all();
    }

    /// Collects every child of PID 1; ends those that are container processes.
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
        let Some(proc) = self.state().by_pid.remove(&pid) else {
            return;
        };
        // The kernel ends the rest of the PID namespace with its init.
        std::thread::spawn(move || {
            proc.streams.drain();
            proc.finish(Ok(code));
        });
    }
}

impl Handler for Agent {
    fn handle(&self, method: &str, payload: &[u8]) -> std::result::Result<Vec<u8>, Status> {
        match method {
            "Hello" => answer(payload, |r| self.hello(r)),
            "CreateContainer" => answer(payload, |r| self.create(r)),
            "StartContainer" => answer(payload, |r| self.start(r)),
            "ExecProcess" => answer(payload, |r| self.exec(r)),
            "SignalProcess" => answer(payload, |r| self.signal(r)),
            "CloseStdin" => answer(payload, |r| self.close_stdin(r)),
            "ResizePty" => answer(payload, |r| self.resize(r)),
            "StatsContainer" => answer(payload, |r| self.stats(r)),
            "RemoveContainer" => answer(payload, |r| self.remove(r)),
            "Shutdown" => answer(payload, |_: Empty| Ok(Empty::new())),
            "WriteStdin" => answer(payload, |r| self.write_stdin(r)),
            "ReadStdout" => answer(payload, |r| self.read(r, false)),
            "ReadStderr" => answer(payload, |r| self.read(r, true)),
            "WaitProcess" => answer(payload, |r| self.wait(r)),
            other => Err(rpc::status(
                Code::UNIMPLEMENTED,
                format!("method {other:?} unknown"),
            )),
        }
    }

    fn answered(&self, method: &str) {
        if method == "Shutdown" {
            power_off();
        }
    }
}

/// Decodes the request `payload`, runs `serve` and encodes its answer; a
/// failure is the status the host reads as the call's error.
fn answer<Req: Message, Resp: Message>(
    payload: &[u8],
    serve: impl FnOnce(Req) -> Result<Resp>,
) -> std::result::Result<Vec<u8>, Status> {
    let request = Req::parse_from_bytes(payload)
        .map_err(|e| rpc::status(Code::INVALID_ARGUMENT, format!("decoding the request: {e}")))?;
    let response = serve(request).map_err(|e| {
        let code = match e {
            AgentError::Refused(_) => Code::FAILED_PRECONDITION,
            _ => Code::INTERNAL,
        };
        rpc::status(code, e.to_string())
    })?;
    response
        .write_to_bytes()
        .map_err(|e| rpc::status(Code::INTERNAL, format!("encoding the answer: {e}")))
}

fn started(pid: u32) -> Started {
    let mut started = Started::new();
    started.pid = pid;
    started
}

/// The spawner of a new container (its processes join `cgroup`) and its
/// init process, prepared: the executable found, the streams made.
fn prepare(
    cgroup: &ContainerCgroup,
    request: EnterRequest,
    stdin: bool,
) -> Result<(Spawner, Pending, Streams)> {
    // The container's processes get a PID namespace of their own, with
    // init as its PID 1.
    let spawner = Spawner::new(cgroup.open_procs()?)?;
    check_executable(&request.root, &request.process)?;
    let (streams, ends) = Streams::open(request.process.terminal().unwrap_or(false), stdin)?;
    Ok((spawner, Pending { request, ends }, streams))
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

/// Flushes the disks and powers the VM off, which ends the VMM process.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached if the kernel refused; PID 1 exiting panics the guest,
    // which (with panic=-1 and no reboot) also ends the VMM.
    std::process::exit(1)
}
