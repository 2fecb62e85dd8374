//! The sandbox image CRI runs as each pod's first container.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::PAUSE_IMAGE;
use crate::image;

/// Writes an OCI image-layout tar of [`PAUSE_IMAGE`]: the busybox layer
/// with `sleep` as its entrypoint. (PID 1 ignores SIGTERM without a handler;
/// CRI stops a sandbox with SIGKILL.)
pub fn build_pause_image(out: &Path) -> Result<()> {
    let layer = image::build_layer(Path::new(image::DEFAULT_BUSYBOX))?;
    let layer_digest = image::sha256_digest(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": image::oci_arch(),
        "os": "linux",
        "config": {
            "Env": [image::IMAGE_PATH_ENV],
            "Entrypoint": ["/bin/sleep", "2147483647"],
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))?;
    let config_digest = image::sha256_digest(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))?;
    let manifest_digest = image::sha256_digest(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": image::oci_arch(), "os": "linux" },
            "annotations": {
                "io.containerd.image.name": PAUSE_IMAGE,
                "org.opencontainers.image.ref.name": image::tag_of(PAUSE_IMAGE),
            },
        }],
    }))?;
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    let mut add = |path: String, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, &path, data)
            .with_context(|| format!("adding {path} to {}", out.display()))
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json".into(), &index)?;
    for (digest, data) in [
        (&config_digest, &config),
        (&manifest_digest, &manifest),
        (&layer_digest, &layer),
    ] {
        let hex = digest.trim_start_matches("sha256:");
        add(format!("blobs/sha256/{hex}"), data)?;
    }
    tar.into_inner()
        .context("finishing the pause image tar")?
        .flush()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
