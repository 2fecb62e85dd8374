//! Container state on disk: one directory per container under `--root`,
//! holding `state.json` (the [`Record`]), a copy of the spec the container
//! was created from, a lock file, and the backend's start FIFO.
//!
//! Every command on a container holds an exclusive `flock` on its lock file
//! for as long as it reads or changes the container, so commands on one id
//! run one at a time while commands on different ids run in parallel.
//! Files are replaced atomically (a temporary file renamed over the old
//! one), so a crash never leaves half a state behind. `state.json` is the
//! container's existence: it is written last on create and removed first on
//! delete.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::procfs;

/// The record of one container.
const STATE_FILE: &str = "state.json";
/// The spec the container was created from.
const SPEC_FILE: &str = "config.json";
/// The lock every command on the container holds.
const LOCK_FILE: &str = "lock";

/// What Strata remembers about a container between commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The container id.
    pub id: String,
    /// The host pid of the container's init.
    pub pid: i32,
    /// The init's start time (`/proc/PID/stat` field 22), to tell it from a
    /// later process with the same pid.
    pub pid_start: u64,
    /// The absolute bundle directory.
    pub bundle: PathBuf,
    /// The absolute root filesystem directory.
    pub rootfs: PathBuf,
    /// When the container was created, RFC 3339 with nanoseconds.
    pub created: String,
    /// The spec's `ociVersion`.
    pub oci_version: String,
    /// The spec's annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The runtime class the container runs on.
    pub class: String,
    /// Where the copy of the container's spec is kept.
    pub config: PathBuf,
}

/// A container's status, as OCI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created; its process waits for `start`.
    Created,
    /// Its process runs.
    Running,
    /// Its processes are frozen.
    Paused,
    /// Its init has exited.
    Stopped,
}

impl Status {
    /// The OCI spelling: `created`, `running`, `paused` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The directory holding every container's state.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// The state root at `dir` (made when the first container is created).
    pub fn new(dir: PathBuf) -> Root {
        Root { dir }
    }

    /// The state directory of container `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Makes the state directory of a new container and locks it. Fails
    /// with [`Error::Exists`] if the id is taken (even by a container whose
    /// create is still under way).
    pub fn create(&self, id: &str) -> Result<Locked> {
        check_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Error::path("creating the state root", &self.dir, e))?;
        let dir = self.container_dir(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_owned()))
            }
            Err(e) => return Err(Error::path("creating", &dir, e)),
        }
        let lock_path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(|e| {
                let _ = fs::remove_dir_all(&dir);
                Error::path("creating", &lock_path, e)
            })?;
        let lock = flock(file, &lock_path).inspect_err(|_| {
            let _ = fs::remove_dir_all(&dir);
        })?;
        Ok(Locked { dir, _lock: lock })
    }

    /// Locks the existing container `id`, waiting for any other command on
    /// it to finish. Fails with [`Error::NotExist`] if there is no such
    /// container, including when it was deleted while this waited.
    pub fn lock(&self, id: &str) -> Result<Locked> {
        check_id(id)?;
        let dir = self.container_dir(id);
        let lock_path = dir.join(LOCK_FILE);
        let Some(file) = open_lock(&lock_path)? else {
            return Err(Error::NotExist(id.to_owned()));
        };
        let locked = Locked {
            dir,
            _lock: flock(file, &lock_path)?,
        };
        if !locked.exists() {
            return Err(Error::NotExist(id.to_owned()));
        }
        Ok(locked)
    }

    /// The ids of the containers under the root, sorted; a missing root has
    /// none.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::path("reading", &self.dir, e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|id| self.container_dir(id).join(STATE_FILE).exists())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Reads container `id`'s record without locking it (for `list`);
    /// safe because records are replaced atomically.
    pub fn peek(&self, id: &str) -> Result<Record> {
        read_record(&self.container_dir(id), id)
    }

    /// Locks what is left of container `id` when it has no record (a create
    /// that died half-way), for removal. `None` if there is nothing of the
    /// kind, or the container exists after all.
    pub fn lock_stale(&self, id: &str) -> Result<Option<Locked>> {
        check_id(id)?;
        let dir = self.container_dir(id);
        let lock_path = dir.join(LOCK_FILE);
        let Some(file) = open_lock(&lock_path)? else {
            // Only an empty directory: a create that died at once.
            let _ = fs::remove_dir(&dir);
            return Ok(None);
        };
        let locked = Locked {
            dir,
            _lock: flock(file, &lock_path)?,
        };
        Ok((!locked.exists() && locked.dir.is_dir()).then_some(locked))
    }
}

/// A container's state directory, locked by this process until dropped.
#[derive(Debug)]
pub struct Locked {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Locked {
    /// The state directory, also the backend's state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the container's record exists.
    pub fn exists(&self) -> bool {
        self.dir.join(STATE_FILE).exists()
    }

    /// Where the copy of the spec goes.
    pub fn spec_path(&self) -> PathBuf {
        self.dir.join(SPEC_FILE)
    }

    /// Reads the record.
    pub fn load(&self) -> Result<Record> {
        let id = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        read_record(&self.dir, &id)
    }

    /// Replaces the record, atomically.
    pub fn save(&self, record: &Record) -> Result<()> {
        let text = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::io("encoding the state", e.into()))?;
        write_atomic(&self.dir.join(STATE_FILE), &text)
    }

    /// Stores the container's spec, atomically.
    pub fn save_spec(&self, spec: &Spec) -> Result<()> {
        let text = serde_json::to_vec_pretty(spec)
            .map_err(|e| Error::io("encoding the spec", e.into()))?;
        write_atomic(&self.spec_path(), &text)
    }

    /// Reads the stored spec.
    pub fn load_spec(&self) -> Result<Spec> {
        let path = self.spec_path();
        let text = fs::read(&path).map_err(|e| Error::path("reading", &path, e))?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::Spec(format!("parsing the stored spec {}: {e}", path.display())))
    }

    /// The container's status now; `frozen` tells whether its cgroup is
    /// frozen.
    pub fn status(&self, record: &Record, frozen: impl FnOnce() -> bool) -> Status {
        status_of(&self.dir, record, frozen)
    }

    /// Removes the container's state: the record first (from then on the
    /// container does not exist for other commands), then everything else.
    /// The lock is held until the directory is gone.
    pub fn remove(self) -> Result<()> {
        let record = self.dir.join(STATE_FILE);
        match fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::path("removing", &record, e)),
        }
        fs::remove_dir_all(&self.dir).map_err(|e| Error::path("removing", &self.dir, e))
    }
}

/// The status of the container with state directory `dir`: stopped once
/// its init has exited (or its pid names another process), created while
/// the backend's start FIFO waits in `dir`, paused while `frozen` says so,
/// else running.
pub fn status_of(dir: &Path, record: &Record, frozen: impl FnOnce() -> bool) -> Status {
    if !procfs::is_running(record.pid, record.pid_start) {
        return Status::Stopped;
    }
    let has_fifo = fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .any(|e| e.file_type().is_ok_and(|t| t.is_fifo()))
    });
    if has_fifo {
        return Status::Created;
    }
    if frozen() {
        return Status::Paused;
    }
    Status::Running
}

/// Rejects ids that are empty or could escape the root.
pub fn check_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_owned()))
    }
}

fn read_record(dir: &Path, id: &str) -> Result<Record> {
    let path = dir.join(STATE_FILE);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(Error::NotExist(id.to_owned())),
        Err(e) => return Err(Error::path("reading", &path, e)),
    };
    serde_json::from_slice(&text)
        .map_err(|e| Error::io(format!("parsing {}", path.display()), e.into()))
}

/// Takes an exclusive lock on `file`, waiting for other holders.
fn flock(file: File, path: &Path) -> Result<Flock<File>> {
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(lock),
            Err((back, nix::errno::Errno::EINTR)) => file = back,
            Err((_, errno)) => {
                return Err(Error::path("locking", path, std::io::Error::from(errno)))
            }
        }
    }
}

/// Writes `data` to `path` through a temporary file in the same directory,
/// synced and renamed over `path`.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&temp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&temp);
        Error::path("writing", path, e)
    })
}

/// Opens an existing container's lock file; `None` if it has none.
fn open_lock(lock_path: &Path) -> Result<Option<fs::File>> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(lock_path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::path("opening", lock_path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        for good in ["a", "ctr-1", "x_y.z+1", "0123456789abcdef"] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é"] {
            assert!(matches!(check_id(bad), Err(Error::InvalidId(_))), "{bad:?}");
        }
    }

    fn record(dir: &Path, id: &str) -> Record {
        Record {
            id: id.into(),
            pid: std::process::id() as i32,
            pid_start: procfs::start_time(std::process::id() as i32).unwrap_or(0),
            bundle: dir.into(),
            rootfs: dir.join("rootfs"),
            created: "1970-01-01T00:00:00Z".into(),
            oci_version: "1.1.0".into(),
            annotations: BTreeMap::new(),
            class: "native".into(),
            config: dir.join("config.json"),
        }
    }

    #[test]
    fn create_lock_save_remove() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = Root::new(tmp.path().join("root"));
        assert!(root.ids().expect("ids").is_empty());
        let locked = root.create("c1").expect("create");
        assert!(matches!(root.create("c1"), Err(Error::Exists(_))));
        let rec = record(locked.dir(), "c1");
        locked.save(&rec).expect("save");
        assert_eq!(locked.load().expect("load"), rec);
        assert_eq!(locked.status(&rec, || false), Status::Running);
        assert_eq!(locked.status(&rec, || true), Status::Paused);
        let mut gone = rec.clone();
        gone.pid_start += 1;
        assert_eq!(locked.status(&gone, || false), Status::Stopped);
        drop(locked);
        assert_eq!(root.ids().expect("ids"), vec!["c1".to_owned()]);
        let locked = root.lock("c1").expect("lock");
        locked.remove().expect("remove");
        assert!(matches!(root.lock("c1"), Err(Error::NotExist(_))));
        assert!(!root.container_dir("c1").exists());
    }

    #[test]
    fn created_while_a_fifo_waits() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = Root::new(tmp.path().to_owned());
        let locked = root.create("c2").expect("create");
        let rec = record(locked.dir(), "c2");
        locked.save(&rec).expect("save");
        nix::unistd::mkfifo(
            &locked.dir().join("start.fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        assert_eq!(locked.status(&rec, || false), Status::Created);
        locked.remove().expect("remove");
    }

    #[test]
    fn stale_directories_are_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = Root::new(tmp.path().to_owned());
        let locked = root.create("half").expect("create");
        drop(locked);
        assert!(matches!(root.lock("half"), Err(Error::NotExist(_))));
        assert!(root.ids().expect("ids").is_empty());
        let stale = root.lock_stale("half").expect("lock").expect("stale");
        stale.remove().expect("remove");
        assert!(!root.container_dir("half").exists());
        assert!(root.lock_stale("half").expect("nothing").is_none());
    }
}
