//! The few filesystem operations cgroup management needs.
//!
//! Everything that touches a cgroup filesystem goes through here, so errors
//! carry the path and value, and so unit tests can stand in a fake kernel:
//! with a [`fake`] kernel installed on the current thread, new directories are
//! populated the way cgroupfs would populate them, directories are removed
//! along with their (fake) interface files, and every write is recorded.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `value` to the existing file `path` in a single `write(2)`.
///
/// The file is never created: cgroup interface files exist or the feature is
/// missing, and the kernel's `ENOENT` says so best.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    #[cfg(test)]
    fake::record(path, value);
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| Error::Write {
            path: path.to_owned(),
            value: value.to_owned(),
            source,
        })
}

/// Reads the whole file `path`.
pub(crate) fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads the whole file `path`, or `None` when it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Creates the directory `path` (its parent must exist); an existing
/// directory is fine.
pub(crate) fn mkdir(path: &Path) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => {
            #[cfg(test)]
            fake::populate(path);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(source) => Err(Error::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Loads `insns` as a cgroup device program and attaches it to the v2
/// cgroup directory `dir`, replacing the one attached there before.
///
/// With a fake kernel installed nothing is loaded: the write journal gets
/// the program's listing under `dir/`[`fake::DEVICE_PROGRAM`].
pub(crate) fn attach_device_program(dir: &Path, insns: &[crate::bpf::Insn]) -> Result<()> {
    #[cfg(test)]
    if fake::active() {
        fake::record(&dir.join(fake::DEVICE_PROGRAM), &crate::bpf::listing(insns));
        return Ok(());
    }
    crate::bpf::attach_device_program(dir, insns)
}

/// Removes the empty cgroup directory `path`, returning the raw error so the
/// caller can decide about `EBUSY` and `ENOENT`.
pub(crate) fn rmdir(path: &Path) -> io::Result<()> {
    #[cfg(test)]
    fake::clear(path)?;
    fs::remove_dir(path)
}

/// A stand-in kernel for unit tests, scoped to the current thread.
#[cfg(test)]
pub(crate) mod fake {
    use std::cell::RefCell;
    use std::fs;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::rc::Rc;

    type Populate = Rc<dyn Fn(&Path)>;

    struct State {
        populate: Populate,
        journal: Vec<(PathBuf, String)>,
    }

    thread_local! {
        static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
    }

    /// The pseudo file name under which attached device programs are
    /// journaled.
    pub(crate) const DEVICE_PROGRAM: &str = "<bpf cgroup_device>";

    /// Whether a fake kernel is installed on this thread.
    pub(crate) fn active() -> bool {
        STATE.with(|s| s.borrow().is_some())
    }

    /// Removes the fake kernel from this thread when dropped.
    pub(crate) struct Installed(());

    impl Drop for Installed {
        fn drop(&mut self) {
            STATE.with(|s| s.borrow_mut().take());
        }
    }

    /// Installs a fake kernel on this thread; `populate` is called on every
    /// directory the crate creates, to fill in its interface files.
    pub(crate) fn install(populate: impl Fn(&Path) + 'static) -> Installed {
        STATE.with(|s| {
            *s.borrow_mut() = Some(State {
                populate: Rc::new(populate),
                journal: Vec::new(),
            })
        });
        Installed(())
    }

    /// Returns and clears the writes recorded so far, in order.
    pub(crate) fn take_journal() -> Vec<(PathBuf, String)> {
        STATE.with(|s| {
            s.borrow_mut()
                .as_mut()
                .map(|st| std::mem::take(&mut st.journal))
                .unwrap_or_default()
        })
    }

    pub(super) fn record(path: &Path, value: &str) {
        STATE.with(|s| {
            if let Some(st) = s.borrow_mut().as_mut() {
                st.journal.push((path.to_owned(), value.to_owned()));
            }
        });
    }

    pub(super) fn populate(path: &Path) {
        let populate = STATE.with(|s| s.borrow().as_ref().map(|st| st.populate.clone()));
        if let Some(populate) = populate {
            populate(path);
        }
    }

    /// Deletes the interface files of a fake cgroup so `rmdir` can succeed,
    /// as it does on cgroupfs.
    pub(super) fn clear(path: &Path) -> io::Result<()> {
        if !active() {
            return Ok(());
        }
        let entries = match fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}
