//! Notification of out-of-memory kills in a cgroup.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::hierarchy::Version;
use crate::stats::parse_keyed;
use crate::sys;

/// Watches a cgroup for OOM kills.
///
/// It owns one file descriptor ([`AsFd`], [`AsRawFd`]) that is
/// non-blocking, close-on-exec and level-readable: it polls readable while
/// a notification is pending and until [`drain`](OomWatcher::drain)
/// consumes it. Callers can therefore wait on it with `poll(2)`, epoll, or
/// wrap the watcher in tokio's `AsyncFd` and call `drain` on each
/// readiness (clearing the readiness when `drain` is done).
///
/// * cgroup v1: an eventfd registered through `cgroup.event_control` with
///   `memory.oom_control`; the kernel signals it when the cgroup runs out of
///   memory (also with the OOM killer disabled) and when the cgroup is
///   removed.
/// * cgroup v2: an inotify descriptor watching `memory.events` for
///   `IN_MODIFY`; the kernel touches the file on every memory event.
#[derive(Debug)]
pub struct OomWatcher {
    source: Source,
    /// The kernel's kill counter when the watcher was made.
    baseline: u64,
    /// OOM events the v1 eventfd reported, in total.
    signalled: u64,
    /// What `drain` reported, in total.
    reported: u64,
}

#[derive(Debug)]
enum Source {
    V1 {
        event: EventFd,
        oom_control: PathBuf,
    },
    V2 {
        inotify: Inotify,
        events: PathBuf,
    },
}

impl Cgroup {
    /// Starts watching the cgroup for OOM kills; see [`OomWatcher`]. Needs
    /// the memory controller (v1 hierarchy mounted, v2 controller enabled,
    /// so that `memory.oom_control` or `memory.events` exists).
    pub fn oom_watcher(&self) -> Result<OomWatcher> {
        let dir = self.dir_for("memory")?;
        match self.version() {
            Version::V1 => {
                let oom_control = dir.join("memory.oom_control");
                let control = File::open(&oom_control).map_err(|source| Error::Read {
                    path: oom_control.clone(),
                    source,
                })?;
                let event = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                    .map_err(|e| notify(&oom_control, "creating an eventfd", e))?;
                sys::write(
                    &dir.join("cgroup.event_control"),
                    &format!("{} {}", event.as_raw_fd(), control.as_raw_fd()),
                )?;
                // Read after registering: a kill in between is then either
                // in the baseline or signalled, never lost.
                let baseline = oom_kills(&sys::read(&oom_control)?).unwrap_or(0);
                Ok(OomWatcher {
                    source: Source::V1 { event, oom_control },
                    baseline,
                    signalled: 0,
                    reported: 0,
                })
            }
            Version::V2 => {
                let events = dir.join("memory.events");
                let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
                    .map_err(|e| notify(&events, "creating an inotify descriptor", e))?;
                inotify
                    .add_watch(&events, AddWatchFlags::IN_MODIFY)
                    .map_err(|e| notify(&events, "watching it with inotify", e))?;
                let text = sys::read(&events)?;
                let baseline = oom_kills(&text).unwrap_or(0);
                Ok(OomWatcher {
                    source: Source::V2 { inotify, events },
                    baseline,
                    signalled: 0,
                    reported: 0,
                })
            }
        }
    }
}

impl OomWatcher {
    /// Consumes the pending notifications and returns how many OOM kills
    /// happened since the last call (since the watcher was made, the first
    /// time); 0 when none did. Never blocks.
    ///
    /// v2 counts the growth of `oom_kill` in `memory.events`. v1 counts the
    /// larger of the OOM events the kernel signalled and the growth of
    /// `oom_kill` in `memory.oom_control` (kernels without that line count
    /// events only; with the OOM killer disabled an event is a process
    /// stalled rather than killed). Once the cgroup is removed the answer is
    /// 0.
    pub fn drain(&mut self) -> Result<u64> {
        let (file, events) = match &self.source {
            Source::V1 { event, oom_control } => {
                let n = match event.read() {
                    Ok(n) => n,
                    Err(Errno::EAGAIN) => 0,
                    Err(e) => return Err(notify(oom_control, "reading the eventfd", e)),
                };
                (oom_control, n)
            }
            Source::V2 { inotify, events } => {
                loop {
                    match inotify.read_events() {
                        Ok(read) if !read.is_empty() => continue,
                        Ok(_) | Err(Errno::EAGAIN) => break,
                        Err(e) => return Err(notify(events, "reading inotify events", e)),
                    }
                }
                (events, 0)
            }
        };
        // A removed cgroup signals once more, and has nothing to count.
        let Some(text) = sys::read_opt(file)? else {
            return Ok(0);
        };
        self.signalled += events;
        let kills = oom_kills(&text).map(|k| k.saturating_sub(self.baseline));
        let total = match (&self.source, kills) {
            (Source::V1 { .. }, Some(k)) => k.max(self.signalled),
            (Source::V1 { .. }, None) => self.signalled,
            (Source::V2 { .. }, k) => k.unwrap_or(0),
        };
        let new = total.saturating_sub(self.reported);
        self.reported = self.reported.max(total);
        Ok(new)
    }

    /// Signals the v1 eventfd as the kernel would.
    #[cfg(test)]
    pub(crate) fn signal_for_test(&self, n: u64) {
        if let Source::V1 { event, .. } = &self.source {
            event.write(n).unwrap();
        }
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.source {
            Source::V1 { event, .. } => event.as_fd(),
            Source::V2 { inotify, .. } => inotify.as_fd(),
        }
    }
}

impl AsRawFd for OomWatcher {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// The `oom_kill` count of a `memory.oom_control` or `memory.events` text.
pub(crate) fn oom_kills(text: &str) -> Option<u64> {
    parse_keyed(text)?.get("oom_kill").copied()
}

fn notify(path: &Path, action: &'static str, e: Errno) -> Error {
    Error::Notify {
        path: path.to_owned(),
        action,
        source: e.into(),
    }
}
