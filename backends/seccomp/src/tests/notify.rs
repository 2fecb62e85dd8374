//! SCMP_ACT_NOTIFY: the listener, and a round trip through a seccomp agent
//! played by the test.

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags, ScmpSyscall};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::wait::WaitStatus;
use oci_spec::runtime::{ContainerProcessState, ContainerState, State};
use serde_json::json;

use super::child::{self, syscall3, Child};
use super::seccomp;
use crate::{process_state, send_listener, Filter};

/// What the agent answers to the child's `getppid`.
const ANSWER: i64 = 4242;

/// How long the agent waits for each step of the child.
const STEP: Duration = Duration::from_secs(20);

/// Returns `code` from the child unless `ok`.
macro_rules! check {
    ($ok:expr, $code:expr) => {
        if !$ok {
            return $code;
        }
    };
}

fn notify_profile(listener_path: &Path) -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": listener_path,
        "listenerMetadata": "role=test;answer=4242",
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_NOTIFY" }],
    })
}

#[test]
fn load_returns_a_close_on_exec_listener() {
    let filter = Filter::compile(&seccomp(notify_profile(Path::new("/run/agent.sock")))).unwrap();
    assert!(filter.wants_listener());
    let status = child::run(|| {
        let listener = match child::load(filter) {
            Ok(Some(listener)) => listener,
            Ok(None) => return 1,
            Err(code) => return code,
        };
        let fd = listener.as_raw_fd();
        // SAFETY: F_GETFD on an open fd only reads its flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        check!(flags >= 0, 2);
        check!(flags & libc::FD_CLOEXEC != 0, 3);
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}"));
        check!(
            target
                .map(|t| t.to_string_lossy().contains("seccomp"))
                .unwrap_or(false),
            4
        );
        0
    });
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
}

#[test]
fn a_second_notifying_filter_in_one_process_is_refused() {
    let path = Path::new("/run/agent.sock");
    let first = Filter::compile(&seccomp(notify_profile(path))).unwrap();
    let second = Filter::compile(&seccomp(notify_profile(path))).unwrap();
    let status = child::run(|| {
        check!(matches!(child::load(first), Ok(Some(_))), 1);
        check!(
            matches!(second.load(), Err(crate::SeccompError::Unsupported { .. })),
            2
        );
        0
    });
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
}

/// Accepts the child's connection, failing if the child ends first.
fn accept(listener: &UnixListener, child: &mut Child) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if let Some(status) = child.try_wait() {
            panic!("child ended before connecting: {status:?}");
        }
        assert!(start.elapsed() < STEP, "child never connected");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads what the runtime sends: the JSON body and the fds that came with it.
fn receive(stream: &mut UnixStream) -> (Vec<u8>, Vec<OwnedFd>) {
    stream.set_read_timeout(Some(STEP)).unwrap();
    let mut body = vec![0; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut body)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs().expect("cmsgs") {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                for fd in raw {
                    // SAFETY: the kernel has just installed `fd` in this
                    // process for this message; nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        (msg.bytes, fds)
    };
    body.truncate(len);
    // The runtime closes the connection once it has sent everything.
    stream.read_to_end(&mut body).expect("reading the rest");
    (body, fds)
}

#[test]
fn round_trip_through_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let profile = seccomp(notify_profile(&socket));
    let filter = Filter::compile(&profile).unwrap();

    let mut child = Child::spawn(|| {
        let listener = match child::load(filter) {
            Ok(Some(listener)) => listener,
            Ok(None) => return 1,
            Err(code) => return code,
        };
        let pid = syscall3(libc::SYS_getpid, 0, 0, 0) as i32;
        let mut state = State::default();
        state
            .set_version(oci_spec::runtime::VERSION.to_owned())
            .set_id("ctr-1".to_owned())
            .set_status(ContainerState::Creating)
            .set_pid(Some(pid))
            .set_bundle("/bundles/ctr-1".into());
        let process = process_state(&profile, pid, state);
        check!(
            send_listener(&socket, listener.as_fd(), &process).is_ok(),
            2
        );
        drop(listener);
        // Blocks until the agent answers.
        check!(syscall3(libc::SYS_getppid, 0, 0, 0) == ANSWER, 3);
        0
    });
    let pid = child.pid().as_raw();

    let mut stream = accept(&listener, &mut child);
    let (body, mut fds) = receive(&mut stream);

    // The body, field by field as the runtime spec names them.
    let raw: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(raw["ociVersion"], oci_spec::runtime::VERSION);
    assert_eq!(raw["fds"], json!(["seccompFd"]));
    assert_eq!(raw["pid"], pid);
    assert_eq!(raw["metadata"], "role=test;answer=4242");
    assert_eq!(raw["state"]["id"], "ctr-1");
    assert_eq!(raw["state"]["status"], "creating");
    assert_eq!(raw["state"]["pid"], pid);
    assert_eq!(raw["state"]["bundle"], "/bundles/ctr-1");
    let typed: ContainerProcessState = serde_json::from_slice(&body).unwrap();
    assert_eq!(typed.pid(), &pid);

    // The one fd: the child's listener.
    assert_eq!(fds.len(), 1, "one fd passed");
    let seccomp_fd = fds.pop().unwrap();
    let mut pfd = [PollFd::new(seccomp_fd.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut pfd, PollTimeout::try_from(STEP).unwrap()).expect("poll");
    assert_eq!(ready, 1, "no notification arrived");
    let req = ScmpNotifReq::receive(seccomp_fd.as_raw_fd()).expect("receive notification");
    assert_eq!(req.pid, pid as u32);
    assert_eq!(req.data.syscall, ScmpSyscall::from_name("getppid").unwrap());
    ScmpNotifResp::new_val(req.id, ANSWER, ScmpNotifRespFlags::empty())
        .respond(seccomp_fd.as_raw_fd())
        .expect("respond");

    let status = child.wait();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
}

#[test]
fn send_listener_reports_a_missing_agent() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    let null = std::fs::File::open("/dev/null").unwrap();
    let err = send_listener(&socket, null.as_fd(), &ContainerProcessState::default())
        .expect_err("nobody listens");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "connecting to the seccomp agent at {}: ",
            socket.display()
        )),
        "{text}"
    );
}

/// Does nothing; installed without SA_RESTART so that a signal would
/// interrupt a waiting system call.
extern "C" fn ignore(_: libc::c_int) {}

/// With `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`, a signal that arrives
/// while the agent holds the notification does not interrupt the call: the
/// agent's answer still arrives. (Without the flag the call would fail with
/// EINTR and the notification would be gone.) The linked libseccomp may be
/// too old to set the flag itself; the filter is then loaded by hand.
#[test]
fn wait_killable_recv_holds_a_received_call_against_signals() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let mut text = notify_profile(&socket);
    text["flags"] = json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]);
    let profile = seccomp(text);
    let filter = Filter::compile(&profile).unwrap();

    let mut child = Child::spawn(|| {
        // SAFETY: an all-zero sigaction is valid; the handler is set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as usize;
        // SAFETY: installs a handler that touches nothing; `action` lives across the call.
        let installed = unsafe { libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()) };
        check!(installed == 0, 1);
        let listener = match child::load(filter) {
            Ok(Some(listener)) => listener,
            Ok(None) => return 2,
            Err(code) => return code,
        };
        let pid = syscall3(libc::SYS_getpid, 0, 0, 0) as i32;
        let process = process_state(&profile, pid, State::default());
        check!(
            send_listener(&socket, listener.as_fd(), &process).is_ok(),
            3
        );
        drop(listener);
        check!(syscall3(libc::SYS_getppid, 0, 0, 0) == ANSWER, 4);
        0
    });
    let pid = child.pid();

    let mut stream = accept(&listener, &mut child);
    let (_, mut fds) = receive(&mut stream);
    let seccomp_fd = fds.pop().expect("the listener");
    let mut pfd = [PollFd::new(seccomp_fd.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut pfd, PollTimeout::try_from(STEP).unwrap()).expect("poll");
    assert_eq!(ready, 1, "no notification arrived");
    let req = ScmpNotifReq::receive(seccomp_fd.as_raw_fd()).expect("receive notification");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    libseccomp::notify_id_valid(seccomp_fd.as_raw_fd(), req.id)
        .expect("the signal cancelled the received call");
    ScmpNotifResp::new_val(req.id, ANSWER, ScmpNotifRespFlags::empty())
        .respond(seccomp_fd.as_raw_fd())
        .expect("respond");
    let status = child.wait();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
}
