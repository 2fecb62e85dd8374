//! Terminals: `ctr run -t` and `ctr task exec -t` on a pseudo-terminal the
//! test owns. The container's shell sees a terminal of its own, its output
//! reaches the client, and resizing the client's terminal (ctr forwards
//! SIGWINCH as ResizePty) changes the container's.

use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use strata_e2e::{runtime_tests, Containerd, RunOptions};

const WAIT: Duration = Duration::from_secs(20);

/// The shell run on the terminal: reports its terminal and size, then the
/// size again for every line read, and exits with `code` on a line `q`.
fn shell(code: i32) -> String {
    format!(
        "tty; stty size; echo ready; \
         while read l; do [ \"$l\" = q ] && exit {code}; stty size; done"
    )
}

/// A command running with a new pseudo-terminal as its controlling
/// terminal and standard streams; everything written to the terminal is
/// collected.
struct Pty {
    master: File,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

fn check(rc: libc::c_int, what: &str) {
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
}

fn set_size(fd: i32, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that outlives the call.
    check(
        unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) },
        "TIOCSWINSZ",
    );
}

impl Pty {
    /// Starts `cmd` on a new terminal of `rows` x `cols`.
    fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Pty {
        // SAFETY: posix_openpt takes flags only; the result is checked.
        let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        check(m, "posix_openpt");
        // SAFETY: `m` is a descriptor we own from here on.
        let master = unsafe { File::from_raw_fd(m) };
        // SAFETY: grantpt/unlockpt on the open master.
        check(unsafe { libc::grantpt(m) }, "grantpt");
        // SAFETY: as above.
        check(unsafe { libc::unlockpt(m) }, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: ptsname_r writes at most `name.len()` bytes into `name`.
        let rc = unsafe { libc::ptsname_r(m, name.as_mut_ptr(), name.len()) };
        assert_eq!(rc, 0, "ptsname_r");
        // SAFETY: ptsname_r NUL-terminated the name.
        let name = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_str()
            .unwrap()
            .to_owned();
        set_size(m, rows, cols);
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&name)
            .unwrap();
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: the hook runs between fork and exec and only makes
        // async-signal-safe calls.
        unsafe {
            cmd.pre_exec(take_terminal);
        }
        let child = cmd.spawn().unwrap();
        // `cmd` still holds the slave descriptors: drop them, so that the
        // master reads end-of-file (EIO) once the child is gone.
        drop(cmd);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = output.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            child,
            output,
        }
    }

    /// Everything written to the terminal so far, without carriage returns.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).replace('\r', "")
    }

    fn len(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    fn text_since(&self, mark: usize) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()[mark..]).replace('\r', "")
    }

    fn type_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    fn wait_for(&self, want: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.text().contains(want) {
            assert!(
                Instant::now() < deadline,
                "{want:?} never appeared on the terminal:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types empty lines until the shell reports `rows cols`.
    fn wait_size(&mut self, rows: u16, cols: u16) {
        let want = format!("\n{rows} {cols}\n");
        let deadline = Instant::now() + WAIT;
        loop {
            let mark = self.len();
            self.type_line("");
            thread::sleep(Duration::from_millis(200));
            if format!("\n{}", self.text_since(mark)).contains(&want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the size never became {rows} {cols}:\n{}",
                self.text()
            );
        }
    }

    /// Waits for the command to exit and returns its exit code.
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "the command did not exit:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In the child: a new session whose controlling terminal is standard
/// input (the new terminal). Only async-signal-safe calls, no allocation.
fn take_terminal() -> std::io::Result<()> {
    // SAFETY: setsid(2) takes no arguments.
    if unsafe { libc::setsid() } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: TIOCSCTTY takes an integer; descriptor 0 is the terminal.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Checks a session on `pty`: the terminal is `tty`, its size follows the
/// client's (24x80 at first, then 40x100), and `q` ends it with `code`.
fn check_session(pty: &mut Pty, tty: impl Fn(&str) -> bool, code: i32) {
    pty.wait_for("ready\n");
    let text = pty.text();
    let reported = text.lines().next().unwrap_or_default().to_owned();
    assert!(tty(&reported), "tty printed {reported:?}:\n{text}");
    pty.wait_size(24, 80);
    set_size(pty.master.as_raw_fd(), 40, 100);
    pty.wait_size(40, 100);
    pty.type_line("q");
    assert_eq!(pty.wait(), code, "{}", pty.text());
}

/// `ctr run -t`: the shell's terminal is `/dev/pts/0` of the container,
/// its output reaches the client, and a resize reaches the container.
fn run_with_tty(c: &Containerd) {
    let id = "tty";
    c.track(id);
    let mut cmd = c.ctr_command();
    cmd.args(["run", "-t", "--rm", "--fifo-dir"])
        .arg(c.fifo_dir())
        .args([
            "--runtime",
            c.runtime(),
            c.image(),
            id,
            "sh",
            "-c",
            &shell(7),
        ]);
    let mut pty = Pty::spawn(cmd, 24, 80);
    check_session(&mut pty, |t| t == "/dev/pts/0", 7);
    drop(pty);
    assert!(c.containers().unwrap().is_empty());
}

/// `ctr task exec -t` in a container without a terminal: the exec'd shell
/// gets a terminal of the container's devpts, and its resizes work too.
fn exec_with_tty(c: &Containerd) {
    let id = "exectty";
    c.run_detached(&RunOptions::new(id, ["sleep", "1000"]))
        .unwrap();
    c.wait_status(id, "RUNNING", WAIT).unwrap();
    let mut cmd = c.ctr_command();
    cmd.args(["tasks", "exec", "-t", "--fifo-dir"])
        .arg(c.fifo_dir())
        .args(["--exec-id", "sh", id, "sh", "-c", &shell(5)]);
    let mut pty = Pty::spawn(cmd, 24, 80);
    check_session(
        &mut pty,
        |t| {
            t.strip_prefix("/dev/pts/")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        },
        5,
    );
    drop(pty);
    assert_eq!(c.remove(id).unwrap(), 137);
}

runtime_tests!(run_with_tty, exec_with_tty);
