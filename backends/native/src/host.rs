//! What differs between the runtimes that drive the native backend: how
//! hooks that run in the runtime's namespaces are run, and who collects the
//! exit of the short-lived init helper.
//!
//! The shim is a long-lived async process whose reaper owns every child exit;
//! the command-line runtime is a short-lived synchronous process that waits
//! for its own children.

use oci_spec::runtime::{Hooks, State};
use strata_backend::{reaper, Error, Result};
use strata_hooks::HookKind;
use tokio::runtime::Handle;

/// The runtime side's part in building a container process.
pub trait Host: Send + Sync {
    /// Runs the spec's hooks of `kind` from the runtime's namespaces.
    fn run_hooks(&self, kind: HookKind, hooks: &Hooks, state: &State) -> Result<()>;
    /// Takes over the init helper process, whose exit nobody needs.
    fn dispose(&self, helper: std::process::Child);
}

/// The host inside the shim: hooks run on its async runtime (from a blocking
/// thread), exits are collected by its reaper.
pub(crate) struct ShimHost {
    /// The shim's async runtime.
    pub runtime: Handle,
}

impl Host for ShimHost {
    fn run_hooks(&self, kind: HookKind, hooks: &Hooks, state: &State) -> Result<()> {
        self.runtime
            .block_on(strata_hooks::run(kind, hooks, state))
            .map_err(|e| Error::Process(e.to_string()))
    }

    fn dispose(&self, helper: std::process::Child) {
        drop(reaper::watch(helper.id() as i32));
    }
}

/// The host for a runtime that is a plain synchronous process.
pub struct DirectHost;

impl Host for DirectHost {
    fn run_hooks(&self, kind: HookKind, hooks: &Hooks, state: &State) -> Result<()> {
        strata_hooks::run_blocking(kind, hooks, state).map_err(|e| Error::Process(e.to_string()))
    }

    fn dispose(&self, mut helper: std::process::Child) {
        // The helper exits as soon as it has reported; reap it.
        let _ = helper.wait();
    }
}
