//! Handing the notification listener to the seccomp agent at
//! `linux.seccomp.listenerPath`.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::{ContainerProcessState, LinuxSeccomp, State, SECCOMP_FD_NAME, VERSION};

use crate::SeccompError;

/// The container process state to send with a listener: this spec version,
/// the one `seccompFd`, the process's `pid` as the runtime sees it, the
/// profile's `listenerMetadata`, and the container's `state`.
pub fn process_state(seccomp: &LinuxSeccomp, pid: i32, state: State) -> ContainerProcessState {
    let mut process = ContainerProcessState::default();
    process
        .set_version(VERSION.to_owned())
        .set_fds(vec![SECCOMP_FD_NAME.to_owned()])
        .set_pid(pid)
        .set_metadata(seccomp.listener_metadata().clone())
        .set_state(state);
    process
}

/// Sends the listener `fd` and the container process state to the seccomp
/// agent listening at `listener_path`, as the OCI runtime spec defines: one
/// connection to the `AF_UNIX` stream socket, the state as JSON with `fd`
/// passed by `SCM_RIGHTS` in the first `sendmsg`, then the connection is
/// closed. `fds` is sent as `["seccompFd"]` whatever `state` says, as that
/// is the one fd sent.
///
/// The caller keeps its `fd`; closing it after this returns is safe, the
/// agent holds its own.
pub fn send_listener(
    listener_path: &Path,
    fd: BorrowedFd<'_>,
    state: &ContainerProcessState,
) -> Result<(), SeccompError> {
    let mut state = state.clone();
    state.set_fds(vec![SECCOMP_FD_NAME.to_owned()]);
    let body = serde_json::to_vec(&state).map_err(|e| {
        SeccompError::io("encoding the container process state")(io::Error::other(e))
    })?;
    let agent = listener_path.display();
    let stream = UnixStream::connect(listener_path).map_err(SeccompError::io(format!(
        "connecting to the seccomp agent at {agent}"
    )))?;
    let fds = [fd.as_raw_fd()];
    let rights = [ControlMessage::ScmRights(&fds)];
    let mut sent = 0;
    while sent < body.len() {
        // The fd travels with the first bytes, and only with them.
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 { &rights } else { &[] };
        let iov = [IoSlice::new(&body[sent..])];
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(0) => {
                return Err(SeccompError::io(format!(
                    "sending to the seccomp agent at {agent}"
                ))(io::ErrorKind::WriteZero.into()))
            }
            Ok(n) => sent += n,
            Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(SeccompError::io(format!(
                    "sending to the seccomp agent at {agent}"
                ))(e.into()))
            }
        }
    }
    Ok(())
}
