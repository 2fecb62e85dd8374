//! A CNI bridge network private to one test node.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use crate::command::{self, CmdOutput};

/// Where libcni caches the result of each attachment.
const CNI_CACHE_DIR: &str = "/var/lib/cni/results";

/// A CNI bridge network private to one node; see the module docs.
#[derive(Debug)]
pub struct CniNetwork {
    /// The network's name (also the name of its IPAM and cache entries).
    pub name: String,
    /// The Linux bridge the `bridge` plugin creates.
    pub bridge: String,
    /// The first three octets of the network's /24 (`10.213.x`).
    pub prefix: String,
    /// host-local's `dataDir`, private to this network.
    pub ipam_dir: PathBuf,
}

impl CniNetwork {
    /// A network with a bridge name and a /24 that no interface or route of
    /// the host uses.
    pub(crate) fn new(unique: u32) -> Result<Self> {
        let taken = {
            let addrs = run(Command::new("ip").args(["-4", "-o", "addr"]))?;
            let routes = run(Command::new("ip").args(["-4", "route"]))?;
            format!("{}\n{}", addrs.stdout, routes.stdout)
        };
        let prefix = (0..250)
            .map(|i| format!("10.213.{}", (unique as usize * 37 + i) % 250 + 1))
            .find(|p| !taken.contains(&format!("{p}.")))
            .ok_or_else(|| anyhow!("no free 10.213.x.0/24 subnet on this host"))?;
        let ipam_dir = tempfile::Builder::new()
            .prefix("se2e-cni-")
            .tempdir_in("/tmp")
            .context("creating the IPAM directory")?
            .keep();
        Ok(Self {
            name: format!("strata-e2e-{unique:x}"),
            bridge: format!("se2e{unique:x}"),
            prefix,
            ipam_dir,
        })
    }

    /// The network configuration list containerd's CRI reads.
    pub fn conflist(&self) -> String {
        let config = json!({
            "cniVersion": "0.4.0",
            "name": self.name,
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": format!("{}.0/24", self.prefix) }]],
                    "dataDir": self.ipam_dir,
                },
            }],
        });
        config.to_string()
    }

    /// Addresses host-local still has reserved, veth devices still on the
    /// bridge, and libcni's cached results for this network.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        let reserved = self.ipam_dir.join(&self.name);
        if let Ok(entries) = fs::read_dir(&reserved) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{}.", self.prefix)) {
                    out.push(format!("IPAM reservation: {}", e.path().display()));
                }
            }
        }
        if let Ok(o) = run(Command::new("ip").args(["-o", "link", "show", "master", &self.bridge]))
        {
            for line in o.stdout.lines().filter(|l| !l.trim().is_empty()) {
                out.push(format!("device on bridge {}: {line}", self.bridge));
            }
        }
        for f in self.cached_results() {
            out.push(format!("CNI cache: {}", f.display()));
        }
        out
    }

    fn cached_results(&self) -> Vec<PathBuf> {
        let prefix = format!("{}-", self.name);
        fs::read_dir(CNI_CACHE_DIR)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the bridge exists.
    pub fn bridge_exists(&self) -> bool {
        Path::new("/sys/class/net").join(&self.bridge).exists()
    }
}

impl Drop for CniNetwork {
    fn drop(&mut self) {
        if self.bridge_exists() {
            if let Err(e) = run(Command::new("ip").args(["link", "del", &self.bridge])) {
                eprintln!("deleting bridge {}: {e:#}", self.bridge);
            }
        }
        for f in self.cached_results() {
            let _ = fs::remove_file(f);
        }
        let _ = fs::remove_dir_all(&self.ipam_dir);
    }
}

/// Runs `cmd` with the default timeout and fails unless it succeeds.
fn run(cmd: &mut Command) -> Result<CmdOutput> {
    let mut owned = Command::new(cmd.get_program());
    owned.args(cmd.get_args());
    command::run(owned, None, command::DEFAULT_TIMEOUT)?.ok()
}
