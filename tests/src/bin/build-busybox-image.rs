//! Writes a busybox OCI image-layout tar that `ctr images import` accepts.
//!
//! Usage: `build-busybox-image OUT.tar [NAME]` where NAME defaults to
//! `docker.io/library/busybox:latest`. The busybox binary is taken from
//! `$STRATA_BUSYBOX` or `/bin/busybox`.

use std::path::PathBuf;
use std::process::ExitCode;

use strata_e2e::image::{build_busybox_image, ImageOptions, DEFAULT_BUSYBOX, DEFAULT_IMAGE_NAME};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: build-busybox-image OUT.tar [NAME]");
        return ExitCode::from(2);
    };
    let name = args
        .next()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| DEFAULT_IMAGE_NAME.to_owned());
    if args.next().is_some() {
        eprintln!("usage: build-busybox-image OUT.tar [NAME]");
        return ExitCode::from(2);
    }
    let busybox = std::env::var_os("STRATA_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BUSYBOX));
    match build_busybox_image(&out, &ImageOptions { busybox, name }) {
        Ok(img) => {
            println!(
                "{} {} {}",
                img.path.display(),
                img.name,
                img.manifest_digest
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("build-busybox-image: {e:#}");
            ExitCode::FAILURE
        }
    }
}
