//! One container's cgroup across the hierarchy: creating it, moving
//! processes in, killing them, and removing it.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::hierarchy::{Hierarchy, Version};
use crate::path::{self, Anchor, OwnCgroups};
use crate::sys;

/// How long [`Cgroup::kill_all`] keeps trying before giving up.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Cgroup::destroy`] retries a directory the kernel still calls
/// busy.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long [`Cgroup::freeze`] waits for the kernel to finish freezing.
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a freeze before a kill may take before the kill goes ahead
/// regardless.
const KILL_FREEZE_TIMEOUT: Duration = Duration::from_secs(1);

/// The v2 controllers enabled down to a new cgroup, when available. Others
/// (io, hugetlb, rdma) are enabled when [`Cgroup::apply`] first needs them.
const V2_CONTROLLERS: &[&str] = &["cpu", "cpuset", "memory", "pids"];

/// The cgroup's directory in one hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Member {
    /// The hierarchy's mount point.
    mount: PathBuf,
    /// The directory names from the mount point down to the cgroup.
    levels: Vec<String>,
    /// The v1 controllers of this hierarchy; empty on v2.
    controllers: Vec<String>,
}

impl Member {
    fn dir(&self) -> PathBuf {
        let mut dir = self.mount.clone();
        dir.extend(&self.levels);
        dir
    }

    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// One container's cgroup: a directory in every v1 hierarchy, or one
/// directory in the v2 unified hierarchy.
///
/// Building one touches nothing; [`create`](Cgroup::create) makes the
/// directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    name: String,
    version: Version,
    members: Vec<Member>,
}

impl Cgroup {
    /// Places `path`, as OCI `linux.cgroupsPath` gives it, in `h`.
    ///
    /// An absolute path is relative to the hierarchy root; a relative one is
    /// below the calling process's own cgroup (read from
    /// `/proc/self/cgroup`, only then); the systemd form `slice:prefix:name`
    /// becomes `/<slice>/<prefix>-<name>.scope`. `..` components and paths
    /// naming no cgroup are rejected.
    pub fn new(h: &Hierarchy, path: &str) -> Result<Cgroup> {
        let parsed = path::parse(path)?;
        let own = match parsed.anchor {
            Anchor::Root => OwnCgroups::default(),
            Anchor::Own => OwnCgroups::current()?,
        };
        Self::resolve(h, path, parsed, &own)
    }

    /// Like [`new`](Cgroup::new), with the calling process's own cgroups
    /// given instead of read from `/proc/self/cgroup`.
    pub fn with_own(h: &Hierarchy, path: &str, own: &OwnCgroups) -> Result<Cgroup> {
        Self::resolve(h, path, path::parse(path)?, own)
    }

    fn resolve(
        h: &Hierarchy,
        name: &str,
        parsed: path::CgroupPath,
        own: &OwnCgroups,
    ) -> Result<Cgroup> {
        let base = |own_path: Option<&str>, root: &str, controller: &str| -> Result<Vec<String>> {
            match parsed.anchor {
                Anchor::Root => Ok(Vec::new()),
                Anchor::Own => own_path.map(|p| path::below_mount(p, root)).ok_or_else(|| {
                    Error::OwnCgroupUnknown {
                        controller: controller.to_owned(),
                    }
                }),
            }
        };
        let members = match h.v2_mount() {
            Some(mount) => {
                let mut levels = base(own.v2(), &mount.root, "(unified)")?;
                levels.extend(parsed.components.iter().cloned());
                vec![Member {
                    mount: mount.point.clone(),
                    levels,
                    controllers: Vec::new(),
                }]
            }
            None => {
                let mut members = Vec::new();
                for (mount, controllers) in h.v1_groups().unwrap_or_default() {
                    let own_path = controllers.iter().find_map(|c| own.v1(c));
                    let mut levels = base(own_path, &mount.root, &controllers[0])?;
                    levels.extend(parsed.components.iter().cloned());
                    members.push(Member {
                        mount: mount.point,
                        levels,
                        controllers,
                    });
                }
                members
            }
        };
        Ok(Cgroup {
            name: name.to_owned(),
            version: h.version(),
            members,
        })
    }

    /// The cgroups path this cgroup was built from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cgroup version of the hierarchy it lives in.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The directories this cgroup owns, one per hierarchy.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.members.iter().map(Member::dir).collect()
    }

    /// The cgroup's directory in the hierarchy holding `controller`: on v1
    /// that controller's hierarchy, on v2 the one directory.
    pub fn path_for(&self, controller: &str) -> Option<PathBuf> {
        match self.version {
            Version::V2 => self.members.first().map(Member::dir),
            Version::V1 => self
                .members
                .iter()
                .find(|m| m.has(controller))
                .map(Member::dir),
        }
    }

    /// Like [`path_for`](Cgroup::path_for), failing when the controller is
    /// not mounted.
    pub(crate) fn dir_for(&self, controller: &str) -> Result<PathBuf> {
        self.path_for(controller)
            .ok_or_else(|| Error::MissingController {
                cgroup: self.name.clone(),
                controller: controller.to_owned(),
            })
    }

    /// Creates the cgroup's directories, with any missing parents.
    ///
    /// On v1, every level of the cpuset hierarchy whose `cpuset.cpus` or
    /// `cpuset.mems` is empty gets its parent's, so processes can join. On v2,
    /// each parent level enables the cpu, cpuset, memory and pids controllers
    /// it has in its `cgroup.subtree_control`; a parent that refuses (one
    /// holding processes, say) is logged and left as is.
    pub fn create(&self) -> Result<()> {
        for m in &self.members {
            let mut dir = m.mount.clone();
            for level in &m.levels {
                if self.version == Version::V2 {
                    enable_controllers(&dir, V2_CONTROLLERS)?;
                }
                dir.push(level);
                sys::mkdir(&dir)?;
            }
            if self.version == Version::V1 && m.has("cpuset") {
                inherit_cpuset(m)?;
            }
        }
        Ok(())
    }

    /// On v2, enables `controllers` (those offered) in every level above
    /// the cgroup, so that its interface files exist; a refusal is logged.
    /// Nothing on v1.
    pub(crate) fn enable_v2(&self, controllers: &[&str]) -> Result<()> {
        if self.version != Version::V2 {
            return Ok(());
        }
        for m in &self.members {
            let mut dir = m.mount.clone();
            for level in &m.levels {
                enable_controllers(&dir, controllers)?;
                dir.push(level);
            }
        }
        Ok(())
    }

    /// Moves process `pid` (with all its threads) into the cgroup, in every
    /// hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        let value = pid.to_string();
        for dir in self.paths() {
            sys::write(&dir.join("cgroup.procs"), &value)?;
        }
        Ok(())
    }

    /// The processes in the cgroup, in any of its hierarchies, sorted. A
    /// cgroup whose directories do not exist has none.
    pub fn procs(&self) -> Result<Vec<i32>> {
        let mut pids = BTreeSet::new();
        for dir in self.paths() {
            let file = dir.join("cgroup.procs");
            let Some(text) = sys::read_opt(&file)? else {
                continue;
            };
            for word in text.split_whitespace() {
                let pid = word.parse().map_err(|_| Error::Parse {
                    path: file.clone(),
                    content: text.clone(),
                })?;
                pids.insert(pid);
            }
        }
        Ok(pids.into_iter().collect())
    }

    /// Sends `signal` to every process in the cgroup, in any of its
    /// hierarchies; one that is already gone is skipped.
    pub fn signal_all(&self, signal: Signal) -> Result<()> {
        for pid in self.procs()? {
            match kill(Pid::from_raw(pid), signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(source) => {
                    return Err(Error::Signal {
                        cgroup: self.name.clone(),
                        signal,
                        pid,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Sends SIGKILL to every process in the cgroup and waits until none is
    /// left, so a process forking meanwhile cannot escape.
    ///
    /// On v2 with `cgroup.kill` the kernel does it in one step. Otherwise the
    /// cgroup is frozen (v1 `freezer.state`, v2 `cgroup.freeze`), every
    /// listed process is killed, the cgroup is thawed so the kills take
    /// effect, and this repeats until `cgroup.procs` is empty. Processes that
    /// have exited but wait to be reaped by their parent count as gone. Gives
    /// up after [`KILL_TIMEOUT`], naming the processes left.
    pub fn kill_all(&self) -> Result<()> {
        self.kill_all_with(true)
    }

    pub(crate) fn kill_all_with(&self, use_kill_file: bool) -> Result<()> {
        let deadline = Instant::now() + KILL_TIMEOUT;
        if self.live_procs()?.is_empty() {
            return Ok(());
        }
        if use_kill_file && self.version == Version::V2 {
            let file = self.members[0].dir().join("cgroup.kill");
            if file.exists() {
                sys::write(&file, "1")?;
                return match self.wait_empty(deadline)? {
                    None => Ok(()),
                    Some(left) => Err(self.kill_timeout(left)),
                };
            }
        }
        let freezer = self.freezer();
        loop {
            if let Some(f) = &freezer {
                match f.freeze(KILL_FREEZE_TIMEOUT) {
                    Ok(true) => {}
                    Ok(false) => log::warn!(
                        "cgroup {:?}: freezing did not complete in {KILL_FREEZE_TIMEOUT:?}; \
                         killing anyway",
                        self.name
                    ),
                    Err(e) => log::warn!("cgroup {:?}: {e}; killing unfrozen", self.name),
                }
            }
            let listed = self.live_procs().inspect(|pids| {
                for &pid in pids {
                    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                        Ok(()) | Err(Errno::ESRCH) => {}
                        Err(e) => {
                            log::warn!("cgroup {:?}: SIGKILL to {pid}: {}", self.name, e.desc())
                        }
                    }
                }
            });
            // Frozen processes cannot act on SIGKILL: thaw so they die.
            if let Some(f) = &freezer {
                if let Err(e) = f.thaw() {
                    log::warn!("cgroup {:?}: {e}", self.name);
                }
            }
            if listed?.is_empty() {
                return Ok(());
            }
            let round = (Instant::now() + Duration::from_millis(200)).min(deadline);
            match self.wait_empty(round)? {
                None => return Ok(()),
                Some(left) if Instant::now() >= deadline => return Err(self.kill_timeout(left)),
                Some(_) => {}
            }
        }
    }

    fn kill_timeout(&self, pids: Vec<i32>) -> Error {
        Error::KillTimeout {
            cgroup: self.name.clone(),
            pids,
            timeout: KILL_TIMEOUT,
        }
    }

    /// The processes listed that have not exited.
    fn live_procs(&self) -> Result<Vec<i32>> {
        Ok(self
            .procs()?
            .into_iter()
            .filter(|&pid| is_alive(pid))
            .collect())
    }

    /// Polls until no live process is left, or `until` passes; returns the
    /// processes left, if any.
    fn wait_empty(&self, until: Instant) -> Result<Option<Vec<i32>>> {
        let mut pause = Duration::from_millis(1);
        loop {
            let left = self.live_procs()?;
            if left.is_empty() {
                return Ok(None);
            }
            if Instant::now() >= until {
                return Ok(Some(left));
            }
            sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// The freezer, if the cgroup has a usable one.
    fn freezer(&self) -> Option<Freezer> {
        let freezer = self.freezer_files().ok()?;
        freezer.available().then_some(freezer)
    }

    /// The freezer files: v1 `freezer.state` in the freezer hierarchy
    /// (failing when it is not mounted), v2 `cgroup.freeze` and
    /// `cgroup.events`.
    fn freezer_files(&self) -> Result<Freezer> {
        let dir = self.dir_for("freezer")?;
        Ok(match self.version {
            Version::V1 => Freezer::V1(dir.join("freezer.state")),
            Version::V2 => Freezer::V2 {
                freeze: dir.join("cgroup.freeze"),
                events: dir.join("cgroup.events"),
            },
        })
    }

    /// Freezes every process in the cgroup, and waits until the kernel
    /// reports them all frozen.
    ///
    /// v1 writes `FROZEN` to `freezer.state` (again while it still reads
    /// `FREEZING`, which retries the stragglers); v2 writes `1` to
    /// `cgroup.freeze` and waits for `frozen 1` in `cgroup.events`. If that
    /// takes longer than [`FREEZE_TIMEOUT`], the cgroup is thawed again and
    /// [`Error::FreezeTimeout`] returned. Freezing a frozen cgroup is fine;
    /// on v1 a missing freezer hierarchy is [`Error::MissingController`].
    pub fn freeze(&self) -> Result<()> {
        self.freeze_within(FREEZE_TIMEOUT)
    }

    pub(crate) fn freeze_within(&self, timeout: Duration) -> Result<()> {
        let freezer = self.freezer_files()?;
        if freezer.freeze(timeout)? {
            return Ok(());
        }
        if let Err(e) = freezer.thaw() {
            log::warn!("cgroup {:?}: {e}", self.name);
        }
        Err(Error::FreezeTimeout {
            cgroup: self.name.clone(),
            timeout,
        })
    }

    /// Lets the processes of a frozen cgroup run again (v1 `THAWED` to
    /// `freezer.state`, v2 `0` to `cgroup.freeze`). Thawing a cgroup that
    /// is not frozen is fine.
    pub fn thaw(&self) -> Result<()> {
        self.freezer_files()?.thaw()
    }

    /// Whether the cgroup is completely frozen: v1 `freezer.state` reads
    /// `FROZEN` (not `FREEZING`), v2 `cgroup.events` has `frozen 1`.
    pub fn is_frozen(&self) -> Result<bool> {
        self.freezer_files()?.frozen()
    }

    /// Removes the cgroup's directories, and any cgroups created below them,
    /// deepest first. A directory the kernel still calls busy is retried for
    /// a short while; one already gone is fine, so this can be repeated.
    /// Parents created by [`create`](Cgroup::create) are left, since other
    /// cgroups may share them.
    pub fn destroy(&self) -> Result<()> {
        for dir in self.paths() {
            remove_tree(&dir)?;
        }
        Ok(())
    }
}

/// Whether `pid` still runs: not gone and not a zombie waiting for its
/// parent.
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => match stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
        {
            Some(state) => state != "Z" && state != "X",
            None => true,
        },
        Err(_) => false,
    }
}

enum Freezer {
    V1(PathBuf),
    V2 { freeze: PathBuf, events: PathBuf },
}

impl Freezer {
    fn available(&self) -> bool {
        match self {
            Freezer::V1(state) => state.exists(),
            Freezer::V2 { freeze, .. } => freeze.exists(),
        }
    }

    /// Starts freezing and waits up to `timeout` for the kernel to report
    /// it done; returns whether it did.
    fn freeze(&self, timeout: Duration) -> Result<bool> {
        match self {
            Freezer::V1(state) => sys::write(state, "FROZEN")?,
            Freezer::V2 { freeze, .. } => sys::write(freeze, "1")?,
        }
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        while !self.frozen()? {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
            if let Freezer::V1(state) = self {
                // v1 re-attempts the freeze of stragglers on each write.
                sys::write(state, "FROZEN")?;
            }
        }
        Ok(true)
    }

    fn frozen(&self) -> Result<bool> {
        Ok(match self {
            Freezer::V1(state) => sys::read(state)?.trim() == "FROZEN",
            Freezer::V2 { events, .. } => {
                sys::read(events)?.lines().any(|l| l.trim() == "frozen 1")
            }
        })
    }

    fn thaw(&self) -> Result<()> {
        match self {
            Freezer::V1(state) => sys::write(state, "THAWED"),
            Freezer::V2 { freeze, .. } => sys::write(freeze, "0"),
        }
    }
}

/// Enables the `wanted` v2 controllers that `dir` offers in its
/// `cgroup.subtree_control`.
fn enable_controllers(dir: &Path, wanted: &[&str]) -> Result<()> {
    let available = sys::read_opt(&dir.join("cgroup.controllers"))?.unwrap_or_default();
    let control = dir.join("cgroup.subtree_control");
    let enabled = sys::read_opt(&control)?.unwrap_or_default();
    let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
    let missing: Vec<String> = available
        .split_whitespace()
        .filter(|c| wanted.contains(c) && !enabled.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if let Err(all) = sys::write(&control, &missing.join(" ")) {
        // One at a time, so one refusal does not cost the others.
        log::debug!("{all}; enabling controllers one by one");
        for one in &missing {
            if let Err(e) = sys::write(&control, one) {
                log::warn!("{e}");
            }
        }
    }
    Ok(())
}

/// Fills empty `cpuset.cpus` / `cpuset.mems` from the parent, top-down, from
/// the mount point to the cgroup.
fn inherit_cpuset(m: &Member) -> Result<()> {
    let mut parent = m.mount.clone();
    for level in &m.levels {
        let dir = parent.join(level);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = sys::read_opt(&dir.join(file))?.unwrap_or_default();
            if own.trim().is_empty() {
                let inherited = sys::read(&parent.join(file))?;
                sys::write(&dir.join(file), inherited.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

/// Removes `dir` and the cgroup directories below it, deepest first.
fn remove_tree(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_owned(),
                source,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    loop {
        match sys::rmdir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(Errno::EBUSY as i32) && Instant::now() < deadline =>
            {
                sleep(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(Error::Remove {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
}
