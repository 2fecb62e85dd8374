//! The container's root filesystem as a disk: an ext4 image made from
//! `<bundle>/rootfs` at Create, so the guest writes to a copy of its own and
//! never to the host's layers.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use strata_backend::{reaper, Error, Exit, Result};

/// Free space the guest gets beyond the image's content. The image is a
/// sparse file, so space the guest does not write costs nothing.
const HEADROOM: u64 = 512 << 20;

/// The smallest image mkfs.ext4 is asked for.
const MIN_SIZE: u64 = 64 << 20;

/// Makes the ext4 image `image` holding the tree at `rootfs`, sized to it.
pub async fn make(rootfs: &Path, image: &Path) -> Result<()> {
    let content = measure(rootfs).await?;
    let size = (content + content / 4 + HEADROOM)
        .max(MIN_SIZE)
        .next_multiple_of(1 << 20);
    write(rootfs, image, size).await
}

/// Rewrites the image `image` of a spare disk, whose size the running VM
/// knows and which must not change, as an ext4 filesystem of `size` bytes
/// holding the tree at `rootfs`; a tree that does not fit is refused.
pub async fn fill(rootfs: &Path, image: &Path, size: u64) -> Result<()> {
    let content = measure(rootfs).await?;
    if content + content / 4 > size {
        return Err(Error::Process(format!(
            "the root filesystem {} ({content} bytes) does not fit the {size} bytes \
             of a pod VM's spare disk",
            rootfs.display()
        )));
    }
    write(rootfs, image, size).await
}

async fn measure(rootfs: &Path) -> Result<u64> {
    let root = rootfs.to_owned();
    tokio::task::spawn_blocking(move || tree_size(&root))
        .await
        .map_err(|e| Error::Process(format!("measuring the root filesystem failed: {e}")))?
}

/// Empties `image` (keeping its inode, which a running VM may hold open),
/// sizes it to `size` and makes the filesystem in it.
async fn write(rootfs: &Path, image: &Path, size: u64) -> Result<()> {
    let file = std::fs::File::create(image).map_err(|e| Error::path("creating", image, e))?;
    file.set_len(size)
        .map_err(|e| Error::path("sizing", image, e))?;
    drop(file);
    let mut command = Command::new("mkfs.ext4");
    command
        .args(["-q", "-F", "-O", "^has_journal", "-d"])
        .arg(rootfs)
        .arg(image);
    run(command).await
}

/// Bytes the tree at `root` occupies (blocks of files, directories and
/// links), not crossing into other filesystems.
fn tree_size(root: &Path) -> Result<u64> {
    let top = std::fs::symlink_metadata(root).map_err(|e| Error::path("reading", root, e))?;
    let mut total = 0;
    let mut dirs: Vec<PathBuf> = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::path("listing", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::path("listing", &dir, e))?;
            let meta = entry
                .metadata()
                .map_err(|e| Error::path("reading", entry.path(), e))?;
            // Inode and directory entry, roughly.
            total += meta.blocks() * 512 + 256;
            if meta.is_dir() && meta.dev() == top.dev() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// Runs a host tool to its end; its error output names what went wrong.
/// The child is collected by the process-wide reaper, never waited on here.
pub async fn run(mut command: Command) -> Result<()> {
    let name = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("running {name}"), e))?;
    let status = reaper::watch(child.id() as i32);
    let mut stderr = child.stderr.take();
    let output = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    })
    .await
    .unwrap_or_default();
    let code = Exit::code_from_wait_status(status.await.unwrap_or(libc::SIGKILL));
    if code != 0 {
        return Err(Error::Process(format!(
            "{name} exited with {code}: {}",
            output.trim()
        )));
    }
    Ok(())
}
