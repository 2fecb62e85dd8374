//! Seccomp: containerd's default profile, profiles that fail calls with a
//! chosen errno, and `SCMP_ACT_NOTIFY` with an agent (the test itself) at
//! `listenerPath` that answers the container's calls.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strata_e2e::{assert_code, runtime_tests, CmdOutput, Containerd, RunOptions};

/// How long the agent waits for the runtime and for each notification.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// `listenerMetadata` of the notify profile.
const METADATA: &str = "strata-e2e-agent-metadata";

/// `ctr run --seccomp` puts the process in filter mode with one filter;
/// without it there is none.
fn default_profile(c: &Containerd) {
    let grep = ["grep", "^Seccomp", "/proc/self/status"];
    let out = c
        .run(&RunOptions::new("seccomp", grep).flag("--seccomp"))
        .unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "Seccomp:\t2\nSeccomp_filters:\t1\n", "{out}");

    let out = c.run(&RunOptions::new("noseccomp", grep)).unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, "Seccomp:\t0\nSeccomp_filters:\t0\n", "{out}");
}

/// A profile that allows everything but `mkdir`/`mkdirat`, which get
/// `action`, with extra fields from `rule`.
fn mkdir_profile(action: &str, rule: Value) -> Value {
    let mut syscall = json!({ "names": ["mkdir", "mkdirat"], "action": action });
    if let (Some(to), Some(from)) = (syscall.as_object_mut(), rule.as_object()) {
        to.extend(from.clone());
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [syscall],
    })
}

/// Runs `script` with a writable tmpfs at `/tmp` and `seccomp` as the
/// profile (none if `Null`).
fn run_with_profile(c: &Containerd, id: &str, script: &str, seccomp: Value) -> CmdOutput {
    let mut spec = c.spec_for(id, &["sh", "-c", script]).unwrap();
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"] }));
    if !seccomp.is_null() {
        spec["linux"]["seccomp"] = seccomp;
    }
    c.run_with_spec(c.runtime(), id, &spec).unwrap()
}

/// `SCMP_ACT_ERRNO` fails the call with `errnoRet`: 1 (EPERM) and 13
/// (EACCES) as the shell reports them; without the profile the same
/// `mkdir` works.
fn errno_profile(c: &Containerd) {
    let script = "mkdir /tmp/x && echo made";
    let out = run_with_profile(c, "nofilter", script, Value::Null);
    assert_code(&out, 0);
    assert_eq!(out.stdout, "made\n", "{out}");

    for (id, errno, text) in [
        ("eperm", 1, "Operation not permitted"),
        ("eacces", 13, "Permission denied"),
    ] {
        let profile = mkdir_profile("SCMP_ACT_ERRNO", json!({ "errnoRet": errno }));
        let out = run_with_profile(c, id, script, profile);
        assert_eq!(out.code, 1, "{out}");
        assert!(out.stdout.is_empty(), "mkdir was not stopped: {out}");
        assert!(
            out.stderr
                .contains(&format!("can't create directory '/tmp/x': {text}")),
            "{out}"
        );
    }
}

runtime_tests!(default_profile, errno_profile);

/// What the agent got and did.
#[derive(Debug)]
struct AgentReport {
    /// The container process state sent with the listener.
    state: Value,
    /// Descriptors that came with it.
    fds: usize,
    /// (syscall number, pid) of each notification answered.
    answered: Vec<(i32, u32)>,
}

/// Waits for `fd` to become readable; false on timeout.
fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one valid pollfd that outlives the call.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    n > 0
}

/// Accepts one connection within [`AGENT_TIMEOUT`].
fn accept(listener: &UnixListener) -> std::io::Result<UnixStream> {
    let deadline = Instant::now() + AGENT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        if wait_readable(listener.as_raw_fd(), left) {
            return listener.accept().map(|(s, _)| s);
        }
    }
}

/// Receives the first message of `stream` with the descriptors that came
/// along (SCM_RIGHTS), then the rest of the bytes up to end-of-file.
fn receive_state(stream: &mut UnixStream) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    // Room for a few descriptors.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    if !wait_readable(stream.as_raw_fd(), AGENT_TIMEOUT) {
        return Err(std::io::ErrorKind::TimedOut.into());
    }
    // SAFETY: `msg` points at `iov` and `control`, which outlive the call.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: `msg` was just filled in by recvmsg; the macro only reads it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header the kernel wrote inside `control`.
        let header = unsafe { cmsg.read_unaligned() };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: as above; CMSG_DATA only computes an address.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
            // SAFETY: CMSG_LEN is arithmetic on its argument.
            let empty = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = (header.cmsg_len as usize - empty) / std::mem::size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: the i-th descriptor lies within the message's data.
                let raw = unsafe { data.wrapping_add(i).read_unaligned() };
                // SAFETY: the kernel installed this descriptor for us alone.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: `cmsg` is a header of `msg`; the macro checks the bounds.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    let mut body = buf[..n as usize].to_vec();
    stream.set_read_timeout(Some(AGENT_TIMEOUT))?;
    stream.read_to_end(&mut body)?;
    Ok((body, fds))
}

/// Answers `answers.len()` notifications on `listener`, in order: `Err(e)`
/// fails the call with errno `e`, `Ok(v)` makes it return `v` without
/// running it.
fn answer(listener: &OwnedFd, answers: &[Result<i64, i32>]) -> std::io::Result<Vec<(i32, u32)>> {
    let mut seen = Vec::new();
    for a in answers {
        if !wait_readable(listener.as_raw_fd(), AGENT_TIMEOUT) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no notification after {seen:?}"),
            ));
        }
        // SAFETY: seccomp_notif is a plain C struct; the kernel wants it zeroed.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the ioctl fills in `req`, which outlives the call.
        if unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut req,
            )
        } < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        seen.push((req.data.nr, req.pid));
        // SAFETY: as above.
        let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
        resp.id = req.id;
        match a {
            Ok(v) => resp.val = *v,
            Err(e) => resp.error = -e,
        }
        // SAFETY: the ioctl reads `resp`, which outlives the call.
        if unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(seen)
}

/// The agent: takes the listener and state from the runtime, then answers
/// two notifications (ENOTSUP, then a fake success).
fn agent(listener: UnixListener) -> std::io::Result<AgentReport> {
    let mut stream = accept(&listener)?;
    let (body, fds) = receive_state(&mut stream)?;
    let state: Value = serde_json::from_slice(&body).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{e}: {}", String::from_utf8_lossy(&body)),
        )
    })?;
    let n = fds.len();
    let notify = fds.into_iter().next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no fd came with {state}"),
        )
    })?;
    let answered = answer(&notify, &[Err(libc::ENOTSUP), Ok(0)])?;
    Ok(AgentReport {
        state,
        fds: n,
        answered,
    })
}

/// `SCMP_ACT_NOTIFY`: the runtime hands the listener and the container
/// process state to the agent at `listenerPath`; the agent's answers are
/// what the container's calls return, and the container exits normally.
fn notify_agent(c: &Containerd) {
    let socket = c.dir().join("agent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let agent = thread::spawn(move || agent(listener));

    let mut profile = mkdir_profile("SCMP_ACT_NOTIFY", json!({}));
    profile["listenerPath"] = json!(socket);
    profile["listenerMetadata"] = json!(METADATA);
    let script = "mkdir /tmp/a; echo a=$?; mkdir /tmp/b; echo b=$?; \
                  if test -d /tmp/b; then echo b-exists; else echo b-faked; fi";
    let out = run_with_profile(c, "notify", script, profile);
    let report = agent
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("agent: {e}\ncontainer: {out}"));

    assert_code(&out, 0);
    assert_eq!(out.stdout, "a=1\nb=0\nb-faked\n", "{out}");
    assert!(
        out.stderr
            .to_lowercase()
            .contains("can't create directory '/tmp/a': operation not supported"),
        "{out}"
    );

    let s = &report.state;
    assert_eq!(report.fds, 1, "{s}");
    assert!(
        s["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{s}"
    );
    assert_eq!(s["fds"], json!(["seccompFd"]), "{s}");
    assert!(s["pid"].as_i64().is_some_and(|p| p > 0), "{s}");
    assert_eq!(s["metadata"], json!(METADATA), "{s}");
    assert_eq!(s["state"]["id"], json!("notify"), "{s}");

    assert_eq!(report.answered.len(), 2, "{report:?}");
    for (nr, pid) in &report.answered {
        assert!(
            [libc::SYS_mkdir, libc::SYS_mkdirat].contains(&i64::from(*nr)),
            "notified of syscall {nr}: {report:?}"
        );
        assert!(*pid > 0, "{report:?}");
    }
    std::fs::remove_file(Path::new(&socket)).unwrap();
}

runtime_tests!(notify_agent);
