//! `spec`: writes a default `config.json` into a bundle directory.

use std::path::Path;

use strata_cgroups::{Hierarchy, Version};

use crate::args::SpecArgs;
use crate::error::{Error, Result};
use crate::spec_template::{default_spec, make_rootless};
use crate::state::write_atomic;

/// `strata spec [--bundle B] [--rootless]`.
pub fn run(args: &SpecArgs) -> Result<i32> {
    let bundle = args.bundle.as_deref().unwrap_or(Path::new("."));
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(Error::Usage(
            "File config.json exists. Remove it first".into(),
        ));
    }
    let unified = Hierarchy::detect().is_ok_and(|h| h.version() == Version::V2);
    let mut spec = default_spec(unified);
    if args.rootless {
        make_rootless(
            &mut spec,
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
    }
    let text = serde_json::to_string_pretty(&spec)
        .map_err(|e| Error::io("encoding the spec", e.into()))?;
    write_atomic(&path, text.as_bytes())?;
    Ok(0)
}
