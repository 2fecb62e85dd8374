//! Terminals over `--console-socket`, as conmon and containerd receive
//! them: the master side arrives as an `SCM_RIGHTS` message and drives a
//! shell in the container (for `create` and for a detached `exec -t`).

mod common;

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use common::{reap, unique_id, Fixture, COMMAND_TIMEOUT};

/// Accepts one connection on `listener` and takes the descriptor it sends.
fn receive_fd(listener: &UnixListener) -> OwnedFd {
    listener.set_nonblocking(false).expect("blocking");
    let (stream, _) = listener.accept().expect("accept");
    let mut name = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&stream),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    for cmsg in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed this descriptor for us.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor arrived");
}

/// Reads from the terminal until `needle` shows up (or time runs out).
fn read_until(master: &mut std::fs::File, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains(needle) {
        assert!(
            Instant::now() < deadline,
            "never saw {needle:?} in {seen:?}"
        );
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading the terminal: {e}; saw {seen:?}"),
        }
    }
    seen
}

#[test]
fn create_hands_the_terminal_to_the_console_socket() {
    let fx = Fixture::new("console", &["sh"]);
    fx.edit_spec(|s| s["process"]["terminal"] = true.into());
    let socket = fx.dir.path().join("console.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let id = unique_id("tty");
    fx.edit_spec(|s| s["linux"]["cgroupsPath"] = format!("{}/{id}", fx.cgroup).into());
    fx.track_id(&id);
    let bundle = fx.bundle.to_str().expect("utf-8").to_owned();
    let socket_arg = socket.to_str().expect("utf-8").to_owned();
    let create = fx.spawn(&[
        "create",
        "--bundle",
        &bundle,
        "--console-socket",
        &socket_arg,
        &id,
    ]);
    let master = receive_fd(&listener);
    create.wait(COMMAND_TIMEOUT).ok();
    let pid = fx.state(&id)["pid"].as_i64().expect("pid") as i32;
    fx.track_pid(pid);
    fx.strata(&["start", &id]).ok();
    let mut master = std::fs::File::from(master);
    master.write_all(b"echo h\"\"i\n").expect("type");
    // The typed line echoes as `echo h""i`; only the output reads `hi`.
    read_until(&mut master, "hi");
    master.write_all(b"exit 4\n").expect("type");
    fx.wait_status(&id, "stopped");
    fx.strata(&["delete", &id]).ok();
    assert!(reap(pid, Duration::from_secs(10)));
    fx.finish();
}

#[test]
fn detached_exec_with_a_terminal() {
    let fx = Fixture::new("exectty", &["sleep", "100"]);
    let id = unique_id("exectty");
    fx.start(&id);
    let socket = fx.dir.path().join("exec.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let pid_file = fx.dir.path().join("exec.pid");
    let socket_arg = socket.to_str().expect("utf-8").to_owned();
    let pid_arg = pid_file.to_str().expect("utf-8").to_owned();
    let exec = fx.spawn(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        &socket_arg,
        "--pid-file",
        &pid_arg,
        &id,
        "sh",
    ]);
    let master = receive_fd(&listener);
    exec.wait(COMMAND_TIMEOUT).ok();
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .parse()
        .expect("pid");
    fx.track_pid(pid);
    let mut master = std::fs::File::from(master);
    master.write_all(b"echo e\"\"x $$\n").expect("type");
    read_until(&mut master, "ex ");
    master.write_all(b"exit\n").expect("type");
    assert!(reap(pid, Duration::from_secs(10)), "the shell exited");
    // Without a console socket a detached terminal has nowhere to go.
    fx.strata(&["exec", "-t", "-d", &id, "sh"])
        .fails_with("cannot allocate tty if strata will detach without setting console socket");
    fx.strata(&["delete", "--force", &id]).ok();
    fx.finish();
}
