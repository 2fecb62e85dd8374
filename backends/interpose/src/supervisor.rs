//! The supervisor: worker threads that receive the target's calls from the
//! listener, hand each to its handler, and answer it.
//!
//! Each worker receives and handles calls itself, with no hand-off between
//! threads. One worker is the norm: with the listener's synchronous wake-up
//! the target and the worker then trade the CPU like a function call, and
//! several workers waiting on the listener would all be woken by every
//! call. A worker stuck in a call that blocks (a FIFO open, a connect, a
//! send) must not hold up the others, so the thread running
//! [`Supervisor::run`] watches: when every worker has been busy for a tick
//! without any call being completed, it starts another (up to
//! [`MAX_WORKERS`]); workers beyond [`BASE_WORKERS`] end when they find
//! themselves idle. A blocked worker holds up only the target thread whose
//! call it performs, and each target thread has at most one pending call.
//!
//! `run` returns once the listener reports that every target is gone,
//! without waiting for workers still blocked in a call of a target that
//! died (a FIFO that nobody will open again would hold them forever).

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::audit::Audit;
use crate::calls::Call;
use crate::creds::Own;
use crate::handlers::{self, Ctx, Reply};
use crate::notify::{Answer, Listener, Notification};
use crate::stats::{Counter, Outcome, Stats};
use crate::target::Threads;
use crate::{Policy, SupervisorError, SystemView};

/// Workers kept waiting for calls.
const BASE_WORKERS: usize = 1;

/// How often `run` checks for stalled workers and for the end.
const TICK: Duration = Duration::from_millis(10);

/// How long `run` waits for busy workers once every target is gone.
const GRACE: Duration = Duration::from_secs(1);

/// The most workers at once.
const MAX_WORKERS: usize = 256;

/// What the workers share.
pub(crate) struct Shared {
    /// The notification listener.
    pub listener: Listener,
    /// The class's policy.
    pub policy: Policy,
    /// The container's system view.
    pub view: SystemView,
    /// What is known about the calling threads.
    pub threads: Threads,
    /// The mediated syscalls by number.
    calls: HashMap<i32, Call>,
    stats: Counter,
    audit: Audit,
    /// Worker accounting.
    workers: Mutex<Workers>,
    ended: Condvar,
    panicked: AtomicBool,
    /// Workers waiting for a call.
    idle: AtomicUsize,
    /// Calls handled so far, to tell progress from a stall.
    completed: AtomicU64,
}

#[derive(Default)]
struct Workers {
    running: usize,
}

/// Mediates the calls of one container's processes.
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    /// A supervisor for the targets behind `listener` (the fd returned
    /// when the filter of [`filter`](crate::filter) was loaded), in
    /// container `container_id` (named in the audit log), enforcing `policy`
    /// and showing `view`.
    pub fn new(
        listener: OwnedFd,
        container_id: String,
        policy: Policy,
        view: SystemView,
    ) -> Result<Supervisor, SupervisorError> {
        policy.check()?;
        let mut calls = HashMap::new();
        for &call in Call::ALL {
            // Calls the native architecture lacks (say, open on aarch64)
            // cannot arrive.
            if let Ok(nr) = libseccomp::ScmpSyscall::from_name(call.name()) {
                calls.insert(i32::from(nr), call);
            }
        }
        let threads = Threads::new().map_err(|source| SupervisorError::Io {
            what: "reading the supervisor's user namespace".to_owned(),
            source,
        })?;
        Ok(Supervisor {
            shared: Arc::new(Shared {
                listener: Listener::new(listener)?,
                policy,
                view,
                threads,
                calls,
                stats: Counter::default(),
                audit: Audit::new(container_id),
                workers: Mutex::new(Workers::default()),
                ended: Condvar::new(),
                panicked: AtomicBool::new(false),
                idle: AtomicUsize::new(0),
                completed: AtomicU64::new(0),
            }),
        })
    }

    /// Handles calls until every target is gone, then returns what was
    /// done. Fails if a worker could not start, or if a handler panicked:
    /// the call is answered `EIO`, the worker ends, and the supervisor ends
    /// once no worker is left (the runtime then tears the container down
    /// rather than leave it to an interposer in an unknown state).
    pub fn run(self) -> Result<Stats, SupervisorError> {
        let shared = &self.shared;
        for _ in 0..BASE_WORKERS {
            spawn_worker(shared)?;
        }
        let mut last = shared.completed.load(Ordering::SeqCst);
        let mut hung_up: Option<Instant> = None;
        loop {
            let running = {
                let workers = shared.lock_workers();
                if workers.running == 0 {
                    break;
                }
                let (workers, _) = shared
                    .ended
                    .wait_timeout(workers, TICK)
                    .unwrap_or_else(|e| e.into_inner());
                workers.running
            };
            if running == 0 {
                break;
            }
            if let Some(since) = hung_up {
                if since.elapsed() > GRACE {
                    log::warn!(
                        "supervisor: every target is gone; leaving {running} blocked workers"
                    );
                    break;
                }
            } else if shared.listener.hung_up() {
                hung_up = Some(Instant::now());
            } else {
                let done = shared.completed.load(Ordering::SeqCst);
                if done == last && shared.idle.load(Ordering::SeqCst) == 0 && running < MAX_WORKERS
                {
                    spawn_worker(shared)?;
                }
                last = done;
            }
        }
        if shared.panicked.load(Ordering::SeqCst) {
            return Err(SupervisorError::WorkerPanicked);
        }
        Ok(shared.stats.snapshot())
    }
}

impl Shared {
    fn lock_workers(&self) -> std::sync::MutexGuard<'_, Workers> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts a worker thread.
fn spawn_worker(shared: &Arc<Shared>) -> Result<(), SupervisorError> {
    shared.lock_workers().running += 1;
    shared.idle.fetch_add(1, Ordering::SeqCst);
    let mine = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("strata-supervise".to_owned())
        .spawn(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| worker(&mine)));
            if let Err(e) = result.unwrap_or_else(|_| {
                mine.panicked.store(true, Ordering::SeqCst);
                Ok(())
            }) {
                log::error!("supervisor worker: {e}");
            }
            mine.lock_workers().running -= 1;
            mine.ended.notify_all();
        });
    if let Err(source) = spawned {
        shared.idle.fetch_sub(1, Ordering::SeqCst);
        shared.lock_workers().running -= 1;
        return Err(SupervisorError::Io {
            what: "starting a supervisor worker thread".to_owned(),
            source,
        });
    }
    Ok(())
}

/// A worker: receives and handles calls until the listener hangs up, or
/// until it is idle while enough others are.
fn worker(shared: &Arc<Shared>) -> io::Result<()> {
    // The worker gets a filesystem context (cwd, root, umask) of its own,
    // with a zero umask: the caller's umask is applied to the mode
    // explicitly.
    // SAFETY: unshare(CLONE_FS) takes an integer and only detaches the
    // calling thread's filesystem context.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        shared.idle.fetch_sub(1, Ordering::SeqCst);
        return Err(io::Error::last_os_error());
    }
    // SAFETY: umask takes an integer; after unshare it affects this thread
    // only.
    unsafe { libc::umask(0) };
    let own = match Own::current() {
        Ok(own) => own,
        Err(e) => {
            shared.idle.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
    };
    loop {
        let n = match shared.listener.receive() {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if shared.listener.hung_up() {
                    break;
                }
                continue;
            }
            Err(e) => {
                shared.idle.fetch_sub(1, Ordering::SeqCst);
                return Err(e);
            }
        };
        shared.idle.fetch_sub(1, Ordering::SeqCst);
        serve(shared, &own, n);
        shared.completed.fetch_add(1, Ordering::SeqCst);
        if shared.idle.fetch_add(1, Ordering::SeqCst) >= BASE_WORKERS {
            shared.idle.fetch_sub(1, Ordering::SeqCst);
            return Ok(());
        }
    }
    shared.idle.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

/// Handles and answers one call.
fn serve(shared: &Shared, own: &Own, n: Notification) {
    let Some(&call) = shared.calls.get(&n.nr) else {
        log::error!("received syscall {} that the filter does not mediate", n.nr);
        let _ = shared.listener.answer(n.id, Answer::Error(libc::ENOSYS));
        return;
    };
    let name = call.name();
    shared.stats.count(name, Outcome::Notified);
    let ctx = Ctx {
        shared,
        own,
        n,
        call,
    };
    let reply = match std::panic::catch_unwind(AssertUnwindSafe(|| handlers::handle(&ctx))) {
        Ok(reply) => reply,
        Err(panic) => {
            shared.panicked.store(true, Ordering::SeqCst);
            let _ = shared.listener.answer(n.id, Answer::Error(libc::EIO));
            std::panic::resume_unwind(panic);
        }
    };
    let (sent, outcome) = match reply {
        Reply::Emulated(answer) => (shared.listener.answer(n.id, answer), Outcome::Emulated),
        Reply::Fd { fd, cloexec } => (
            match shared
                .listener
                .answer_fd(n.id, std::os::fd::AsFd::as_fd(&fd), cloexec)
            {
                // The caller cannot take the fd (EMFILE at its fd limit):
                // the call fails with that, as the kernel's open would.
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                    let errno = e.raw_os_error().unwrap_or(libc::EIO);
                    shared.listener.answer(n.id, Answer::Error(errno))
                }
                sent => sent.map(drop),
            },
            Outcome::Emulated,
        ),
        Reply::Continue => (
            shared.listener.answer(n.id, Answer::Continue),
            Outcome::Continued,
        ),
        Reply::Denied { errno, what } => {
            shared.audit.denied(n.tid, name, &what, errno);
            (
                shared.listener.answer(n.id, Answer::Error(errno)),
                Outcome::Denied,
            )
        }
        Reply::Answered => (Ok(()), Outcome::Emulated),
        Reply::Gone => return,
    };
    match sent {
        Ok(()) => shared.stats.count(name, outcome),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            log::debug!("{name} by thread {} interrupted before its answer", n.tid);
        }
        Err(e) => log::warn!("answering {name} by thread {}: {e}", n.tid),
    }
}
