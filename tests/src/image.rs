//! Builds a minimal OCI image (an image-layout tar archive) from the host's
//! static busybox, so the end-to-end tests need no registry.
//!
//! The archive holds `oci-layout`, `index.json` and three blobs under
//! `blobs/sha256/`: the image config, the manifest and one uncompressed layer.
//! Every tar entry has a fixed mtime, owner and mode, so the same busybox
//! binary always yields the same digests.
//!
//! The layer also holds the static `strata-probe` program at
//! [`PROBE_PATH`], built from this workspace once per process (see
//! [`probe_binary`]).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Where the static busybox is taken from unless told otherwise.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// The image name the tests run unless told otherwise.
pub const DEFAULT_IMAGE_NAME: &str = "docker.io/library/busybox:latest";

/// The `PATH` baked into the image config.
pub const IMAGE_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the probe program sits in the image (absolute inside a container).
pub const PROBE_PATH: &str = "/usr/bin/strata-probe";

/// Fixed modification time of every entry (2000-01-01T00:00:00Z).
const MTIME: u64 = 946_684_800;

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// Contents of `/etc/passwd` inside the image.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

/// Contents of `/etc/group` inside the image.
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// What was written by [`build_busybox_image`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The archive that was written.
    pub path: PathBuf,
    /// Full image name recorded in `index.json` (`io.containerd.image.name`).
    pub name: String,
    /// Digest of the manifest (`sha256:<hex>`).
    pub manifest_digest: String,
    /// Digest of the image config (`sha256:<hex>`), i.e. the image ID.
    pub config_digest: String,
    /// Digest of the single layer, equal to its diff ID (`sha256:<hex>`).
    pub layer_digest: String,
}

/// Options for [`build_busybox_image`].
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// Static busybox binary to put in the image as `/bin/busybox`.
    pub busybox: PathBuf,
    /// Full image name, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
}

impl Default for ImageOptions {
    fn default() -> Self {
        Self {
            busybox: PathBuf::from(DEFAULT_BUSYBOX),
            name: DEFAULT_IMAGE_NAME.to_owned(),
        }
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The tag of an image name (`latest` for `docker.io/library/busybox:latest`).
///
/// A name without a tag (or with only a digest) is tagged `latest`.
pub fn tag_of(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    let last = last.split('@').next().unwrap_or(last);
    match last.rsplit_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag,
        _ => "latest",
    }
}

/// OCI architecture name of the host.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Applet names printed by `busybox --list`, sorted and deduplicated.
pub fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", busybox.display()))?;
    ensure!(
        out.status.success(),
        "{} --list failed: {}",
        busybox.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut applets: Vec<String> = String::from_utf8(out.stdout)
        .context("busybox --list printed non-UTF-8")?
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_owned)
        .collect();
    applets.sort();
    applets.dedup();
    ensure!(
        applets.iter().any(|a| a == "sh"),
        "{} has no sh applet",
        busybox.display()
    );
    Ok(applets)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    // Owner names are left empty on purpose: only numeric IDs matter.
    h
}

fn add_dir<W: Write>(b: &mut tar::Builder<W>, path: &str, mode: u32) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, mode, 0);
    b.append_data(&mut h, path, std::io::empty())
        .with_context(|| format!("adding directory {path}"))
}

fn add_file<W: Write>(b: &mut tar::Builder<W>, path: &str, mode: u32, data: &[u8]) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, path, data)
        .with_context(|| format!("adding file {path}"))
}

fn add_symlink<W: Write>(b: &mut tar::Builder<W>, path: &str, target: &str) -> Result<()> {
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, path, target)
        .with_context(|| format!("adding symlink {path}"))
}

/// The uncompressed layer tar: busybox, its applet links, the probe,
/// `/etc` files and the empty directories a container expects.
pub fn build_layer(busybox: &Path) -> Result<Vec<u8>> {
    let bin = std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let applets = busybox_applets(busybox)?;
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    for (dir, mode) in [
        ("bin/", 0o755),
        ("dev/", 0o755),
        ("etc/", 0o755),
        ("proc/", 0o555),
        ("root/", 0o700),
        ("run/", 0o755),
        ("sys/", 0o555),
        ("tmp/", 0o1777),
        ("usr/", 0o755),
        ("usr/bin/", 0o755),
        ("var/", 0o755),
    ] {
        add_dir(&mut b, dir, mode)?;
    }
    add_file(&mut b, "bin/busybox", 0o755, &bin)?;
    add_file(
        &mut b,
        PROBE_PATH.trim_start_matches('/'),
        0o755,
        probe_binary()?,
    )?;
    for applet in &applets {
        add_symlink(&mut b, &format!("bin/{applet}"), "busybox")?;
    }
    add_file(&mut b, "etc/passwd", 0o644, PASSWD.as_bytes())?;
    add_file(&mut b, "etc/group", 0o644, GROUP.as_bytes())?;
    b.into_inner().context("finishing the layer tar")
}

/// The workspace this crate belongs to.
fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new(".."))
        .to_path_buf()
}

/// True if `elf` is an ELF executable without a program interpreter, i.e.
/// one that needs no dynamic loader and no shared libraries.
pub fn is_static_elf(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // 64-bit little-endian ELF only: the only kind this harness builds.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let at = phoff as usize + i * usize::from(phentsize);
        u32_at(at).is_some_and(|t| t != PT_INTERP)
    })
}

/// Builds the probe as a static executable and returns its bytes.
///
/// `cargo build --release -p strata-probe` for the host's
/// `<arch>-unknown-linux-gnu` target with `crt-static`, into
/// `<workspace>/target/probe` (a target directory of its own, so the
/// flags do not invalidate the main build, and an explicit target, so they
/// do not reach build scripts). A file lock in that directory keeps
/// concurrent test processes from reading a binary another one is writing.
fn build_probe() -> Result<Vec<u8>> {
    let ws = workspace_dir();
    let target_dir = ws.join("target").join("probe");
    fs::create_dir_all(&target_dir)
        .with_context(|| format!("creating {}", target_dir.display()))?;
    let lock_path = target_dir.join("strata-probe.lock");
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    // SAFETY: flock(2) on a descriptor `lock` owns; released when it is
    // closed at the end of this function.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("locking {}", lock_path.display()));
    }
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .args(["-p", "strata-probe", "--target", &triple])
        .arg("--manifest-path")
        .arg(ws.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    let out = cmd
        .output()
        .with_context(|| format!("running {}", crate::command::describe(&cmd)))?;
    ensure!(
        out.status.success(),
        "building the static strata-probe failed ({}): `{}`\n{}",
        out.status,
        crate::command::describe(&cmd),
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target_dir
        .join(&triple)
        .join("release")
        .join("strata-probe");
    let bytes = fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    ensure!(
        is_static_elf(&bytes),
        "{} is not a static executable (it has a program interpreter)",
        bin.display()
    );
    Ok(bytes)
}

/// The static probe program, built on first use in this process (see
/// `build_probe`); later calls return the same bytes or the same error.
pub fn probe_binary() -> Result<&'static [u8]> {
    static PROBE: OnceLock<std::result::Result<Vec<u8>, String>> = OnceLock::new();
    match PROBE.get_or_init(|| build_probe().map_err(|e| format!("{e:#}"))) {
        Ok(b) => Ok(b),
        Err(e) => bail!("{e}"),
    }
}

/// Unpacks the test image's layer (built from the default busybox) into
/// `dest`, which is created if missing: a root filesystem of its own for a
/// test that changes it (ownership, symlinks, extra files).
pub fn unpack_rootfs(dest: &Path) -> Result<()> {
    let layer = build_layer(Path::new(DEFAULT_BUSYBOX))?;
    let mut ar = tar::Archive::new(layer.as_slice());
    ar.set_preserve_permissions(true);
    ar.unpack(dest)
        .with_context(|| format!("unpacking the rootfs into {}", dest.display()))
}

/// Writes an OCI image-layout tar of a busybox image to `out`.
///
/// The archive is deterministic: the same busybox and name give the same
/// bytes. `index.json` names the image with both `io.containerd.image.name`
/// (the full name) and `org.opencontainers.image.ref.name` (the tag).
pub fn build_busybox_image(out: &Path, opts: &ImageOptions) -> Result<BuiltImage> {
    if opts.name.is_empty() {
        bail!("image name must not be empty");
    }
    let layer = build_layer(&opts.busybox)?;
    let layer_digest = sha256_digest(&layer);

    let config = json!({
        "created": "2000-01-01T00:00:00Z",
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Env": [IMAGE_PATH_ENV],
            "Cmd": ["sh"],
            "WorkingDir": "/",
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": [layer_digest],
        },
        "history": [{
            "created": "2000-01-01T00:00:00Z",
            "created_by": "strata-e2e build-busybox-image",
        }],
    });
    let config = serde_json::to_vec(&config)?;
    let config_digest = sha256_digest(&config);

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {
            "mediaType": MEDIA_CONFIG,
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": MEDIA_LAYER,
            "digest": layer_digest,
            "size": layer.len(),
        }],
    });
    let manifest = serde_json::to_vec(&manifest)?;
    let manifest_digest = sha256_digest(&manifest);

    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": oci_arch(), "os": "linux" },
            "annotations": {
                "io.containerd.image.name": opts.name,
                "org.opencontainers.image.ref.name": tag_of(&opts.name),
            },
        }],
    });
    let index = serde_json::to_vec(&index)?;
    let layout = serde_json::to_vec(&json!({ "imageLayoutVersion": "1.0.0" }))?;

    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut b = tar::Builder::new(BufWriter::new(file));
    b.mode(tar::HeaderMode::Deterministic);
    add_file(&mut b, "oci-layout", 0o644, &layout)?;
    add_file(&mut b, "index.json", 0o644, &index)?;
    add_dir(&mut b, "blobs/", 0o755)?;
    add_dir(&mut b, "blobs/sha256/", 0o755)?;
    for (digest, data) in [
        (&config_digest, &config),
        (&manifest_digest, &manifest),
        (&layer_digest, &layer),
    ] {
        let hex = digest.trim_start_matches("sha256:");
        add_file(&mut b, &format!("blobs/sha256/{hex}"), 0o644, data)?;
    }
    b.into_inner()
        .context("finishing the image tar")?
        .flush()
        .with_context(|| format!("writing {}", out.display()))?;

    Ok(BuiltImage {
        path: out.to_path_buf(),
        name: opts.name.clone(),
        manifest_digest,
        config_digest,
        layer_digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(tag_of("docker.io/library/busybox:latest"), "latest");
        assert_eq!(tag_of("localhost:5000/busybox:1.36"), "1.36");
        assert_eq!(tag_of("localhost:5000/busybox"), "latest");
        assert_eq!(tag_of("busybox"), "latest");
    }

    #[test]
    fn image_is_deterministic_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.tar");
        let b = dir.path().join("b.tar");
        let opts = ImageOptions::default();
        let ia = build_busybox_image(&a, &opts).unwrap();
        let ib = build_busybox_image(&b, &opts).unwrap();
        assert_eq!(ia.manifest_digest, ib.manifest_digest);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

        let layer = build_layer(Path::new(DEFAULT_BUSYBOX)).unwrap();
        assert_eq!(sha256_digest(&layer), ia.layer_digest);
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(layer.as_slice());
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            names.push(e.path().unwrap().display().to_string());
        }
        for want in [
            "bin/busybox",
            "bin/sh",
            "bin/cat",
            "etc/passwd",
            "etc/group",
            "proc/",
            "tmp/",
            "usr/bin/strata-probe",
        ] {
            assert!(names.iter().any(|n| n == want), "layer lacks {want}");
        }
    }

    #[test]
    fn probe_is_static_and_runs() {
        let bin = probe_binary().unwrap();
        assert!(is_static_elf(bin));
        assert!(!is_static_elf(&std::fs::read("/bin/sh").unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata-probe");
        std::fs::write(&path, bin).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        // A fork of another test thread may still hold the file open for
        // writing for a moment (ETXTBSY).
        let out = (0..50)
            .find_map(|_| match Command::new(&path).arg("denied").output() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                }
                r => Some(r.unwrap()),
            })
            .expect("the probe stayed busy");
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("bpf "));
    }
}
