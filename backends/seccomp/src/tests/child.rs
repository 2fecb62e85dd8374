//! Runs test code in a forked child, so that only the child is filtered.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::Filter;

/// Exit code of a child whose code panicked.
pub const PANICKED: i32 = 101;

/// How long a child may run before the test gives up on it.
const DEADLINE: Duration = Duration::from_secs(30);

/// A forked child, killed and reaped when dropped unless waited for.
pub struct Child {
    pid: Option<Pid>,
}

impl Child {
    /// Forks; the child runs `body` and exits with the code it returns.
    ///
    /// `body` should only make system calls and allocate: the test runner
    /// has other threads, whose locks the child may have inherited held.
    pub fn spawn(body: impl FnOnce() -> i32) -> Child {
        // SAFETY: the child only runs `body`, which the tests keep to raw
        // system calls and allocation (glibc's malloc is reset for the
        // child by its fork handlers), and then leaves through _exit
        // without returning into the test runner.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = std::panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or(PANICKED);
                // SAFETY: _exit ends the child at once, running none of the
                // test runner's exit handlers or destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => Child { pid: Some(child) },
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> Pid {
        self.pid.expect("child not reaped yet")
    }

    /// Whether the child has ended, with how (reaping it).
    pub fn try_wait(&mut self) -> Option<WaitStatus> {
        let status = waitpid(self.pid(), Some(WaitPidFlag::WNOHANG)).expect("waitpid");
        match status {
            WaitStatus::StillAlive => None,
            ended => {
                self.pid = None;
                Some(ended)
            }
        }
    }

    /// Waits for the child to end; kills it and fails after [`DEADLINE`].
    pub fn wait(mut self) -> WaitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "child {} hung", self.pid());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Runs `body` in a child and waits for it.
pub fn run(body: impl FnOnce() -> i32) -> WaitStatus {
    Child::spawn(body).wait()
}

/// In a child: loads `filter` the way an unprivileged container process
/// would (no_new_privs set first), with core dumps off so that a filter
/// killing the child leaves no core file behind. Exits with 90-92 if a step
/// fails.
pub fn load(filter: Filter) -> Result<Option<std::os::fd::OwnedFd>, i32> {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the rlimit it is given, which lives across the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) } != 0 {
        return Err(90);
    }
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(91);
    }
    filter.load().map_err(|_| 92)
}

/// The errno of the last failed system call in this thread.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Makes a raw system call with up to three arguments; returns its result,
/// or `-errno`.
pub fn syscall3(nr: libc::c_long, a: u64, b: u64, c: u64) -> i64 {
    // SAFETY: the tests only pass system calls whose arguments are plain
    // integers or pointers to memory that outlives the call.
    let ret = unsafe { libc::syscall(nr, a, b, c) };
    if ret == -1 {
        -i64::from(errno())
    } else {
        ret
    }
}
