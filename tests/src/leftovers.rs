//! The leftover checker: what a test leaves on the host that belongs to its
//! containerd fixture.
//!
//! [`Containerd::snapshot`] records the state before a test;
//! [`Containerd::leftovers`] lists, after it, what is new and still there:
//!
//! * processes of this instance other than containerd itself: shims (found by
//!   the containerd socket on their command line or the fixture directory in
//!   their environment, which is how Strata's shims are told apart from other
//!   instances'), container processes and anything else descending from
//!   them or from containerd;
//! * mounts below the fixture directory (its containerd root and state, so
//!   container rootfs mounts) or below
//!   `/run/containerd/io.containerd.runtime.v2.task/<ns>`;
//! * cgroup directories below `/sys/fs/cgroup/<hierarchy>/<ns>/` in every
//!   hierarchy, including the `unified` one;
//! * runc state below `/run/containerd/runc/<ns>/`;
//! * shim sockets in `/run/containerd/s` for any container ID the test
//!   used (the socket name is a hash of address, namespace and ID);
//! * I/O fifos in the fixture's fifo directory;
//! * containers and tasks containerd still lists.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::containerd::{shim_socket_path, Containerd, DEFAULT_TASK_DIR, RUNC_STATE_DIR};
use crate::procfs;

/// How long [`Containerd::assert_no_leftovers`] lets things settle: a shim
/// may still be exiting when `ctr` returns.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Host state owned by a fixture at one point in time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSnapshot {
    /// `(pid, start time)` of the fixture's processes.
    pub processes: BTreeSet<(i32, u64)>,
    /// Mount points below the watched directories.
    pub mounts: BTreeSet<PathBuf>,
    /// Cgroup directories below the namespace's cgroup directories.
    pub cgroups: BTreeSet<PathBuf>,
    /// Entries of the runc state directory of the namespace.
    pub runc_state: BTreeSet<PathBuf>,
    /// Shim sockets of tracked container IDs.
    pub sockets: BTreeSet<PathBuf>,
    /// Entries of the fifo directory.
    pub fifos: BTreeSet<PathBuf>,
}

fn subdirs(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.insert(e.path());
                subdirs(&e.path(), out);
            }
        }
    }
}

fn entries(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

impl Containerd {
    fn watched_mount(&self, p: &Path) -> bool {
        p.starts_with(self.dir())
            || p.starts_with(Path::new(DEFAULT_TASK_DIR).join(self.namespace()))
    }

    /// Records the fixture's current footprint on the host.
    pub fn snapshot(&self) -> HostSnapshot {
        let table = procfs::processes();
        let processes = self
            .our_pids_in(&table)
            .into_iter()
            .filter_map(|p| table.get(&p))
            .map(|p| p.key())
            .collect();
        let mounts = procfs::mounts()
            .into_iter()
            .filter(|m| self.watched_mount(&m.mount_point))
            .map(|m| m.mount_point)
            .collect();
        let mut cgroups = BTreeSet::new();
        for d in self.cgroup_ns_dirs() {
            subdirs(&d, &mut cgroups);
        }
        let runc_state = entries(&Path::new(RUNC_STATE_DIR).join(self.namespace()));
        let mut ids = self.tracked_ids();
        if let Ok(listed) = self.containers() {
            ids.extend(listed);
        }
        let sockets = ids
            .iter()
            .map(|id| shim_socket_path(self.address(), self.namespace(), id))
            .filter(|p| p.exists())
            .collect();
        HostSnapshot {
            processes,
            mounts,
            cgroups,
            runc_state,
            sockets,
            fifos: entries(self.fifo_dir()),
        }
    }

    /// What is there now and was not in `before`, one line per item; also
    /// containers and tasks containerd still lists. Empty means clean.
    pub fn leftovers(&self, before: &HostSnapshot) -> Vec<String> {
        let mut out = Vec::new();
        // Containers first: listing them also tracks their IDs for the
        // socket check.
        match self.containers() {
            Ok(ids) => {
                for id in ids {
                    self.track(&id);
                    out.push(format!("container still registered in containerd: {id}"));
                }
            }
            Err(e) => out.push(format!("could not list containers: {e:#}")),
        }
        if let Ok(tasks) = self.tasks() {
            for t in tasks {
                out.push(format!(
                    "task still present: {} (pid {}, {})",
                    t.id, t.pid, t.status
                ));
            }
        }
        let now = self.snapshot();
        let table = procfs::processes();
        for key in now.processes.difference(&before.processes) {
            if key.0 == self.pid() {
                continue;
            }
            if let Some(p) = table.get(&key.0) {
                if p.key() == *key && !p.is_zombie() {
                    out.push(format!("process: {}", p.describe()));
                }
            }
        }
        for m in now.mounts.difference(&before.mounts) {
            out.push(format!("mount: {}", m.display()));
        }
        for c in now.cgroups.difference(&before.cgroups) {
            out.push(format!("cgroup: {}", c.display()));
        }
        for r in now.runc_state.difference(&before.runc_state) {
            out.push(format!("runc state: {}", r.display()));
        }
        for s in now.sockets.difference(&before.sockets) {
            out.push(format!("shim socket: {}", s.display()));
        }
        for f in now.fifos.difference(&before.fifos) {
            out.push(format!("fifo: {}", f.display()));
        }
        out
    }

    /// Waits up to [`SETTLE_TIMEOUT`] for [`Containerd::leftovers`] to become
    /// empty and panics with the list if it does not.
    pub fn assert_no_leftovers(&self, before: &HostSnapshot) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let left = self.leftovers(before);
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the test left {} thing(s) behind on the host:\n  {}",
                    left.len(),
                    left.join("\n  ")
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}
