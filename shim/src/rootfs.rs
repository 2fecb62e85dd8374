//! Mounts the root filesystem containerd prepared (usually an overlay of the
//! image's snapshots) at `<bundle>/rootfs`, and takes it down again.

use std::path::{Path, PathBuf};

use containerd_shim::protos::api::Mount;
use nix::mount::{umount2, MntFlags};

use crate::error::{Result, TaskError};

/// A mount containerd asked for, in plain terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    /// Filesystem type, e.g. `overlay`.
    pub fs_type: String,
    /// Mount source.
    pub source: String,
    /// Mount options.
    pub options: Vec<String>,
}

impl From<&Mount> for RootfsMount {
    fn from(m: &Mount) -> Self {
        RootfsMount {
            fs_type: m.type_.clone(),
            source: m.source.clone(),
            options: m.options.clone(),
        }
    }
}

/// The rootfs directory of a bundle.
pub fn rootfs_dir(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// Mounts `mounts` in order at `<bundle>/rootfs`; on failure unmounts what was done.
pub async fn mount(bundle: &Path, mounts: &[RootfsMount]) -> Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    let target = rootfs_dir(bundle);
    tokio::fs::create_dir_all(&target)
        .await
        .map_err(|e| TaskError::Internal(format!("creating {}: {e}", target.display())))?;
    for m in mounts {
        let proto = Mount {
            type_: m.fs_type.clone(),
            source: m.source.clone(),
            options: m.options.clone(),
            ..Default::default()
        };
        if let Err(e) = containerd_shim::asynchronous::util::mount_rootfs(&proto, &target).await {
            unmount(bundle).await;
            return Err(TaskError::Internal(format!(
                "mounting the {} rootfs from {} at {}: {e}",
                m.fs_type,
                m.source,
                target.display()
            )));
        }
    }
    Ok(())
}

/// Unmounts everything stacked at `<bundle>/rootfs`; a bare directory is fine.
pub async fn unmount(bundle: &Path) {
    let target = rootfs_dir(bundle);
    let _ = tokio::task::spawn_blocking(move || loop {
        match umount2(&target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
            Err(e) => {
                log::warn!("unmounting {}: {e}", target.display());
                break;
            }
        }
    })
    .await;
}
