//! Reading the host's process table and mount table from `/proc`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One process as seen in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process ID.
    pub pid: i32,
    /// Parent process ID.
    pub ppid: i32,
    /// Start time in clock ticks since boot; with `pid` it names a process
    /// uniquely even if PIDs are reused.
    pub start: u64,
    /// One-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Arguments (empty for kernel threads).
    pub cmdline: Vec<String>,
    /// Target of `/proc/<pid>/exe`, if readable.
    pub exe: Option<PathBuf>,
    /// Raw `/proc/<pid>/environ` (NUL-separated), if readable.
    pub environ: Vec<u8>,
}

impl ProcInfo {
    /// Whether this is a live containerd shim serving containerd namespace
    /// `namespace` (a `containerd-shim*` binary with `-namespace
    /// NAMESPACE`), not one of its short-lived `start` or `delete` runs.
    pub fn is_shim_server(&self, namespace: &str) -> bool {
        !self.is_zombie()
            && self.cmdline.first().is_some_and(|a| {
                Path::new(a)
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("containerd-shim"))
            })
            && self.has_flag("-namespace", namespace)
            && !self
                .cmdline
                .last()
                .is_some_and(|a| a == "start" || a == "delete")
    }

    /// Whether the command line has `name value` as two arguments.
    pub fn has_flag(&self, name: &str, value: &str) -> bool {
        self.cmdline
            .windows(2)
            .any(|w| w[0] == name && w[1] == value)
    }

    /// `(pid, start)`: a process identity that survives PID reuse.
    pub fn key(&self) -> (i32, u64) {
        (self.pid, self.start)
    }

    /// True for a zombie (exited, not yet reaped).
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }

    /// A one-line description for reports.
    pub fn describe(&self) -> String {
        let exe = self
            .exe
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "?".into());
        format!(
            "pid {} (ppid {}, state {}, exe {}): {}",
            self.pid,
            self.ppid,
            self.state,
            exe,
            self.cmdline.join(" ")
        )
    }

    /// True if `needle` occurs in any argument.
    pub fn cmdline_mentions(&self, needle: &str) -> bool {
        self.cmdline.iter().any(|a| a.contains(needle))
    }

    /// True if `needle` occurs in the process environment.
    pub fn environ_mentions(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.environ.windows(needle.len()).any(|w| w == needle)
    }
}

/// Parses `/proc/<pid>/stat` into `(state, ppid, starttime)`.
fn parse_stat(stat: &str) -> Option<(char, i32, u64)> {
    // The command name is in parentheses and may contain anything, so
    // split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); starttime is field 22.
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, ppid, start))
}

/// Reads one process; `None` if it vanished or is unreadable.
pub fn read_proc(pid: i32) -> Option<ProcInfo> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let stat = fs::read_to_string(base.join("stat")).ok()?;
    let (state, ppid, start) = parse_stat(&stat)?;
    let cmdline = fs::read(base.join("cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(ProcInfo {
        pid,
        ppid,
        start,
        state,
        cmdline,
        exe: fs::read_link(base.join("exe")).ok(),
        environ: fs::read(base.join("environ")).unwrap_or_default(),
    })
}

/// Every process currently in `/proc`, by PID.
pub fn processes() -> BTreeMap<i32, ProcInfo> {
    let mut out = BTreeMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(p) = read_proc(pid) {
            out.insert(pid, p);
        }
    }
    out
}

/// PIDs of `roots` and all their descendants in `table`.
pub fn with_descendants(table: &BTreeMap<i32, ProcInfo>, roots: &BTreeSet<i32>) -> BTreeSet<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in table.values() {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut seen = BTreeSet::new();
    let mut stack: Vec<i32> = roots.iter().copied().collect();
    while let Some(pid) = stack.pop() {
        if seen.insert(pid) {
            if let Some(kids) = children.get(&pid) {
                stack.extend(kids);
            }
        }
    }
    seen
}

/// True if the process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    read_proc(pid).is_some_and(|p| !p.is_zombie())
}

/// How many entries `/proc/<pid>/<sub>` has; `None` if it is unreadable.
fn count_entries(pid: i32, sub: &str) -> Option<usize> {
    fs::read_dir(format!("/proc/{pid}/{sub}"))
        .ok()
        .map(|d| d.flatten().count())
}

/// How many file descriptors process `pid` has open (`/proc/<pid>/fd`).
pub fn fd_count(pid: i32) -> Option<usize> {
    count_entries(pid, "fd")
}

/// How many threads process `pid` has (`/proc/<pid>/task`).
pub fn thread_count(pid: i32) -> Option<usize> {
    count_entries(pid, "task")
}

/// Undoes the octal escapes (`\040` and friends) of `/proc/*/mountinfo`.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MountInfo {
    /// Mount ID.
    pub id: u32,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source.
    pub source: String,
}

/// The mounts of this process's mount namespace.
pub fn mounts() -> Vec<MountInfo> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let (pre, post) = match line.split_once(" - ") {
            Some(x) => x,
            None => continue,
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(id), Some(mp)) = (pre.first().and_then(|s| s.parse().ok()), pre.get(4)) else {
            continue;
        };
        out.push(MountInfo {
            id,
            mount_point: PathBuf::from(unescape_mount_path(mp)),
            fstype: post.first().unwrap_or(&"").to_string(),
            source: post.get(1).unwrap_or(&"").to_string(),
        });
    }
    out
}

/// Mounts at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<MountInfo> {
    mounts()
        .into_iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_name() {
        let s = "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 10";
        assert_eq!(parse_stat(s), Some(('S', 7, 12345)));
    }

    #[test]
    fn self_is_visible() {
        let me = read_proc(std::process::id() as i32).unwrap();
        assert!(!me.cmdline.is_empty());
        let table = processes();
        let set = with_descendants(&table, &BTreeSet::from([me.ppid]));
        assert!(set.contains(&me.pid));
    }

    #[test]
    fn unescape() {
        assert_eq!(unescape_mount_path(r"/a\040b"), "/a b");
        assert_eq!(unescape_mount_path(r"/a\\b"), r"/a\\b");
    }
}

/// What a leaking process would hold more of: open descriptors and threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdings {
    /// Open file descriptors.
    pub fds: usize,
    /// Threads.
    pub threads: usize,
}

impl Holdings {
    /// Those of process `pid`; panics if it is gone.
    pub fn of(pid: i32) -> Holdings {
        Holdings {
            fds: fd_count(pid).unwrap_or_else(|| panic!("process {pid} is gone")),
            threads: thread_count(pid).unwrap_or_else(|| panic!("process {pid} is gone")),
        }
    }

    /// Waits up to `settle` (idle worker threads linger a while) until
    /// process `pid` holds no more than `self`: its descriptors give or
    /// take `fd_slack`, its threads too when `threads`; then asserts that
    /// it does, and returns what it holds.
    pub fn assert_back(
        self,
        pid: i32,
        fd_slack: usize,
        threads: bool,
        settle: std::time::Duration,
    ) -> Holdings {
        let back = |now: Holdings| {
            now.fds <= self.fds + fd_slack && (!threads || now.threads <= self.threads)
        };
        let deadline = std::time::Instant::now() + settle;
        let mut now = Holdings::of(pid);
        while !back(now) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(200));
            now = Holdings::of(pid);
        }
        assert!(
            now.fds <= self.fds + fd_slack,
            "process {pid}'s open descriptors grew from {} to {}",
            self.fds,
            now.fds
        );
        if threads {
            assert!(
                now.threads <= self.threads,
                "process {pid}'s threads grew from {} to {}",
                self.threads,
                now.threads
            );
        }
        now
    }
}
