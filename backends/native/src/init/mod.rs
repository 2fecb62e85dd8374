//! The init helper: a freshly exec'd, single-threaded copy of the runtime
//! binary that builds the container and becomes its process.
//!
//! The runtime (a multi-threaded tokio process) never does namespace or mount
//! work between fork and exec; it re-executes itself with the `init` argument
//! and hands a [`Request`] over the channel on descriptor 3. The helper enters
//! or creates the namespaces, forks the process that becomes the container's
//! PID 1 (or exec'd process), reports its pid, and exits. The forked process
//! sets up the rootfs and credentials, reports ready, and — for a container's
//! init — waits on the start FIFO before exec'ing the user's program, so that
//! nothing of the user's runs before Start.

mod in_root;
mod kernel;
mod mount_options;
mod namespaces;
mod process;
mod rootfs;
mod terminal;

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::{ContainerState, Process, State};
use strata_hooks::HookKind;
use strata_seccomp::Filter;

use crate::channel::Channel;
use crate::protocol::{container_state, ExecRequest, InitRequest, Report, Request, CHANNEL_FD_ENV};

/// Why setting up a container process failed; the text reaches the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InitError(String);

/// Result of init-side steps.
pub(crate) type Result<T> = std::result::Result<T, InitError>;

impl InitError {
    fn msg(text: impl Into<String>) -> Self {
        InitError(text.into())
    }
    fn io(context: impl std::fmt::Display, e: std::io::Error) -> Self {
        InitError(format!("{context}: {e}"))
    }
    fn sys(context: impl std::fmt::Display, e: nix::errno::Errno) -> Self {
        InitError(format!("{context}: {}", e.desc()))
    }
    fn context(self, context: impl std::fmt::Display) -> Self {
        InitError(format!("{context}: {}", self.0))
    }
}

/// Runs the init helper. Binaries that embed the native backend call this
/// when started with the `init` argument.
pub fn main() -> ! {
    let Some(fd) = std::env::var(CHANNEL_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        eprintln!("init: {CHANNEL_FD_ENV} is not set; this command is run by the runtime only");
        std::process::exit(2);
    };
    // SAFETY: the runtime placed the channel's socket at this descriptor
    // before exec; nothing else in this fresh process owns it. It must not
    // reach the container's program, so it closes on exec from now on.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    // SAFETY: F_SETFD on a descriptor this process owns; no memory is involved.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // Only 0, 1, 2 and the preserved descriptors below the channel may reach
    // the container: whatever else the runtime's caller leaked closes on exec.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only flags descriptors.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            fd as u32 + 1,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    let mut channel = Channel::new(stream);
    let failure = match channel.recv::<Request>() {
        Ok(Some(Request::Init(request))) => create(channel, *request),
        Ok(Some(Request::Exec(request))) => exec(channel, *request),
        Ok(Some(Request::Continue)) => (channel, InitError::msg("unexpected continue")),
        Ok(None) => std::process::exit(2),
        Err(e) => (channel, InitError::io("reading the request", e)),
    };
    let (mut channel, error) = failure;
    let _ = channel.send(&Report::Error(error.to_string()));
    std::process::exit(1)
}

/// Builds a container; returns only on failure.
fn create(mut channel: Channel, request: InitRequest) -> (Channel, InitError) {
    let spec = &request.spec;
    let filter = match compile_seccomp(spec.linux().as_ref().and_then(|l| l.seccomp().as_ref())) {
        Ok(f) => f,
        Err(e) => return (channel, e),
    };
    let interposer = match compile_interposer(request.interposer.as_ref()) {
        Ok(f) => f,
        Err(e) => return (channel, e),
    };
    // Opened while still the host's root: a user namespace's root may not
    // be able to reach the state directory.
    let fifo = match open_start_fifo(&request.start_fifo) {
        Ok(f) => f,
        Err(e) => return (channel, e),
    };
    if let Err(e) = namespaces::enter(spec, &mut channel) {
        return (channel, e);
    }
    if let Err(e) = fork_reporting(&mut channel) {
        return (channel, e);
    }
    // The container's init process from here on.
    let result = (|| {
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| InitError::msg("the spec has no process"))?;
        let in_user_ns = namespaces::has_own(spec, oci_spec::runtime::LinuxNamespaceType::User);
        // The host's /proc is still mounted here: it names our host pid.
        let host_pid = std::fs::read_link("/proc/self")
            .ok()
            .and_then(|p| p.to_str()?.parse::<i32>().ok())
            .unwrap_or(0);
        if namespaces::has_own(spec, oci_spec::runtime::LinuxNamespaceType::Network) {
            kernel::bring_up_loopback()?;
        }
        rootfs::prepare(spec, &request.rootfs)?;
        rootfs::mount_all(spec, &request.bundle, &request.rootfs, &request.cgroup_dirs)?;
        rootfs::create_devices(spec, &request.rootfs, in_user_ns)?;
        if let Some(hooks) = spec.hooks() {
            if !HookKind::CreateRuntime.hooks(hooks).is_empty()
                || !HookKind::Prestart.hooks(hooks).is_empty()
            {
                await_runtime(&mut channel, Report::CreateRuntimeHooks)?;
            }
            let state = hook_state(&request, host_pid, ContainerState::Creating);
            strata_hooks::run_blocking(HookKind::CreateContainer, hooks, &state)
                .map_err(|e| InitError::msg(e.to_string()))?;
        }
        rootfs::pivot(&request.rootfs)?;
        kernel::set_sysctls(spec)?;
        rootfs::restrict(spec)?;
        namespaces::set_hostname(spec)?;
        if process.terminal().unwrap_or(false) {
            terminal::attach(process, &mut channel)?;
        }
        kernel::set_oom_score_adj(process)?;
        kernel::set_personality(spec)?;
        let (program, listener) = process::prepare(process, filter)?;
        hand_over_listener(&mut channel, listener)?;
        load_interposer(&mut channel, interposer)?;
        Ok((program, host_pid))
    })();
    let (program, host_pid) = match result {
        Ok(v) => v,
        Err(e) => return (channel, e),
    };
    if channel.send(&Report::Ready).is_err() {
        std::process::exit(1);
    }
    drop(channel);
    if let Err(e) = wait_for_start(fifo) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    if let Some(hooks) = request.spec.hooks() {
        let state = hook_state(&request, host_pid, ContainerState::Running);
        if let Err(e) = strata_hooks::run_blocking(HookKind::StartContainer, hooks, &state) {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
    let error = program.exec();
    eprintln!("{error}");
    std::process::exit(127)
}

/// Turns the calling process, single-threaded and already in its
/// container's namespaces, cgroup and root, into `process` of `spec`: as the
/// container's init (`init`), it first applies the spec's masked and
/// read-only paths and sysctls; then, as any process, its OOM score,
/// limits, capabilities, user, `noNewPrivileges` and the spec's seccomp
/// profile, and execs the program. This is the container code of the
/// native class for runtimes that build namespaces and root filesystems
/// themselves, such as the microvm backend's guest agent. Returns only on
/// failure.
pub fn become_process(spec: &oci_spec::runtime::Spec, process: &Process, init: bool) -> InitError {
    let result = (|| {
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
        let filter = compile_seccomp(seccomp)?;
        if init {
            rootfs::restrict(spec)?;
            kernel::set_sysctls(spec)?;
        }
        kernel::set_oom_score_adj(process)?;
        let (program, _listener) = process::prepare(process, filter)?;
        Ok(program)
    })();
    match result {
        Ok(program) => program.exec(),
        Err(e) => e,
    }
}

/// Runs a process in a running container; returns only on failure.
fn exec(mut channel: Channel, request: ExecRequest) -> (Channel, InitError) {
    let filter = match compile_seccomp(request.seccomp.as_ref()) {
        Ok(f) => f,
        Err(e) => return (channel, e),
    };
    let interposer = match compile_interposer(request.interposer.as_ref()) {
        Ok(f) => f,
        Err(e) => return (channel, e),
    };
    if let Err(e) = namespaces::join(&request.namespaces) {
        return (channel, e);
    }
    if let Err(e) = fork_reporting(&mut channel) {
        return (channel, e);
    }
    let result = (|| {
        let process = &request.process;
        if process.terminal().unwrap_or(false) {
            terminal::attach(process, &mut channel)?;
        }
        kernel::set_oom_score_adj(process)?;
        let (program, listener) = process::prepare(process, filter)?;
        hand_over_listener(&mut channel, listener)?;
        load_interposer(&mut channel, interposer)?;
        Ok(program)
    })();
    let program = match result {
        Ok(p) => p,
        Err(e) => return (channel, e),
    };
    if channel.send(&Report::Ready).is_err() {
        std::process::exit(1);
    }
    drop(channel);
    let error = program.exec();
    eprintln!("{error}");
    std::process::exit(127)
}

/// Compiles the spec's seccomp profile, early, so that a bad one fails
/// before anything is built.
fn compile_seccomp(seccomp: Option<&oci_spec::runtime::LinuxSeccomp>) -> Result<Option<Filter>> {
    seccomp
        .map(Filter::compile)
        .transpose()
        .map_err(|e| InitError::msg(e.to_string()))
}

/// Compiles the interposer's filter, whose listener goes to the runtime.
fn compile_interposer(seccomp: Option<&oci_spec::runtime::LinuxSeccomp>) -> Result<Option<Filter>> {
    seccomp
        .map(Filter::compile_for_runtime)
        .transpose()
        .map_err(|e| InitError::msg(format!("the interposer's filter: {e}")))
}

/// Sends the seccomp listener to the runtime, which passes it to the agent.
fn hand_over_listener(channel: &mut Channel, listener: Option<OwnedFd>) -> Result<()> {
    if let Some(fd) = listener {
        channel
            .send_with_fds(&Report::SeccompListener, &[fd.as_raw_fd()])
            .map_err(|e| InitError::io("sending the seccomp listener", e))?;
        await_continue(channel)?;
    }
    Ok(())
}

/// Loads the interposer's filter, the last thing before exec, and waits
/// until the runtime has taken its listener and the interposer runs.
///
/// From here on the notified calls wait for the interposer, so the listener
/// is named with a plain write rather than sent with `sendmsg`, and this
/// process's copy is closed once the runtime holds its own: the program must
/// never hold the listener of its own filter.
fn load_interposer(channel: &mut Channel, filter: Option<Filter>) -> Result<()> {
    let Some(filter) = filter else {
        return Ok(());
    };
    if !filter.wants_listener() {
        return Err(InitError::msg("the interposer's filter notifies no call"));
    }
    // The kernel takes a filter from a process without CAP_SYS_ADMIN only
    // under no_new_privs, and a program must not shed its interposer by
    // executing something set-user-ID: an interposed process always has it.
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(InitError::io(
            "setting no_new_privs for the interposer",
            std::io::Error::last_os_error(),
        ));
    }
    let listener = filter
        .load()
        .map_err(|e| InitError::msg(format!("loading the interposer's filter: {e}")))?
        .ok_or_else(|| InitError::msg("the interposer's filter gave no listener"))?;
    channel
        .send(&Report::InterposerListener(listener.as_raw_fd()))
        .map_err(|e| InitError::io("naming the interposer's listener", e))?;
    let taken = await_continue(channel);
    drop(listener);
    taken
}

/// Asks the runtime to do something and waits until it has.
fn await_runtime(channel: &mut Channel, report: Report) -> Result<()> {
    channel
        .send(&report)
        .map_err(|e| InitError::io("asking the runtime", e))?;
    await_continue(channel)
}

fn await_continue(channel: &mut Channel) -> Result<()> {
    match channel.recv::<Request>() {
        Ok(Some(Request::Continue)) => Ok(()),
        Ok(_) => Err(InitError::msg("the runtime stopped the setup")),
        Err(e) => Err(InitError::io("waiting for the runtime", e)),
    }
}

/// The container state hooks get on their standard input.
fn hook_state(request: &InitRequest, pid: i32, status: ContainerState) -> State {
    container_state(
        &request.id,
        &request.bundle,
        request.spec.annotations(),
        pid,
        status,
    )
}

/// Forks the container process as a sibling of this helper (CLONE_PARENT),
/// so that it is the runtime's own child: the shim's reaper, or a waiting
/// command-line runtime, collects its exit directly. The helper reports the
/// pid and exits; the child returns once that report is out, so the two
/// never write to the channel at once.
fn fork_reporting(channel: &mut Channel) -> Result<()> {
    let (wait_read, wait_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| InitError::sys("pipe", e))?;
    // SAFETY: clone without CLONE_VM and without a new stack behaves like
    // fork; this process is single-threaded (a fresh exec of the runtime that
    // started no threads), so the child may run arbitrary code.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        -1 => Err(InitError::io("clone", std::io::Error::last_os_error())),
        0 => {
            drop(wait_write);
            let mut byte = [0u8; 1];
            let mut released = std::fs::File::from(wait_read);
            while let Err(e) = released.read(&mut byte) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(InitError::io("waiting for the pid report", e));
                }
            }
            Ok(())
        }
        child => {
            let code = match channel.send(&Report::Pid(child as i32)) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // Exiting closes `wait_write`, which releases the child.
            std::process::exit(code)
        }
    }
}

/// Opens the start FIFO for reading without blocking; the runtime opens the
/// other end and writes one byte at Start.
fn open_start_fifo(path: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| InitError::io(format!("opening {}", path.display()), e))?;
    Ok(OwnedFd::from(file))
}

/// Blocks until the runtime writes to the start FIFO.
///
/// A FIFO that never had a writer does not report hang-up, so poll sleeps
/// until the first byte arrives.
fn wait_for_start(fifo: OwnedFd) -> Result<()> {
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(InitError::sys("waiting for start", e)),
        }
    }
    let mut byte = [0u8; 1];
    let mut file = std::fs::File::from(fifo);
    match file.read(&mut byte) {
        Ok(1) => Ok(()),
        Ok(_) => Err(InitError::msg("the start FIFO closed without a start")),
        Err(e) => Err(InitError::io("reading the start FIFO", e)),
    }
}
