//! `fileio`: sequential write and read throughput of one file in a given
//! directory, in MiB/s, one JSON line per direction.
//!
//! The file is written in 1 MiB blocks and fsync'ed (the time includes the
//! fsync), its cached pages are then dropped with `posix_fadvise` where the
//! file system allows it, and it is read back in 1 MiB blocks. The file is
//! removed at the end, also after a failure.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::error::{Error, Result};

/// Bytes per write and read call.
const BLOCK: usize = 1 << 20;

/// Removes the file when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn mib_per_s(mib: u64, start: Instant) -> f64 {
    mib as f64 / start.elapsed().as_secs_f64()
}

/// Writes and reads `size_mib` MiB in `dir` and prints the throughputs.
pub fn run(size_mib: u64, dir: &Path) -> Result<()> {
    if size_mib == 0 {
        return Err(Error::invalid("--size must be at least 1 MiB"));
    }
    let path = dir.join(format!("strata-probe-fileio.{}", std::process::id()));
    let scratch = Scratch(path.clone());
    let shown = path.display().to_string();
    let mut buf = vec![0xa5_u8; BLOCK];

    let start = Instant::now();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&scratch.0)
        .map_err(|e| Error::new(format!("creating {shown}"), e))?;
    for _ in 0..size_mib {
        f.write_all(&buf)
            .map_err(|e| Error::new(format!("writing {shown}"), e))?;
    }
    f.sync_all()
        .map_err(|e| Error::new(format!("fsync of {shown}"), e))?;
    let write = mib_per_s(size_mib, start);
    drop_cache(&f);
    drop(f);
    println!(
        "{}",
        json!({ "test": "write", "dir": dir, "mib": size_mib, "mib_per_s": write })
    );

    let start = Instant::now();
    let mut f = File::open(&path).map_err(|e| Error::new(format!("opening {shown}"), e))?;
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::new(format!("reading {shown}"), e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let read = mib_per_s(size_mib, start);
    if total != size_mib * BLOCK as u64 {
        return Err(Error::invalid(format!(
            "read {total} bytes back from {shown}, wrote {}",
            size_mib * BLOCK as u64
        )));
    }
    println!(
        "{}",
        json!({ "test": "read", "dir": dir, "mib": size_mib, "mib_per_s": read })
    );
    Ok(())
}

/// Asks the kernel to drop the file's clean cached pages, so the read
/// comes from the file system rather than the page cache where it can.
/// File systems that keep data only in memory (tmpfs) ignore it.
fn drop_cache(f: &File) {
    // SAFETY: posix_fadvise(2) on an open fd; advice only, no memory
    // is passed.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}
