//! OCI lifecycle hooks for Strata backends.
//!
//! A bundle's `config.json` may list programs to run at fixed points of a
//! container's life (`createRuntime`, `poststop`, ...). Each is given the
//! container's state as JSON on its stdin, gets exactly the arguments and
//! environment it lists, and may have a time limit. A failing hook of the
//! early kinds fails the operation; the post kinds are only logged.
//!
//! Two entry points exist because hooks run in two kinds of process:
//! [`run`] is for the shim, whose global reaper
//! (`strata_backend::reaper`) collects every child exit, and
//! [`run_blocking`] is for a single-threaded process that reaps its own
//! children, such as a container's init running `createContainer` and
//! `startContainer` hooks.

mod blocking;
mod error;
mod hook;
mod kind;
mod shim;

use oci_spec::runtime::{Hook, Hooks, State};

pub use error::{HookError, HookFailure};
pub use kind::HookKind;

use hook::Ended;

/// Runs the hooks of `kind` in order from the shim, giving each `state`.
///
/// Needs a tokio runtime with time and I/O enabled, and the reaper started
/// (`strata_backend::reaper::start`); hook exits are claimed from it. For the
/// kinds that fail the operation, the first failure stops the list and is
/// returned, and the caller must then stop the container. For `poststart`
/// and `poststop`, every hook runs, failures are logged as warnings and the
/// result is `Ok`.
pub async fn run(kind: HookKind, hooks: &Hooks, state: &State) -> Result<(), HookError> {
    let list = kind.hooks(hooks);
    if list.is_empty() {
        return Ok(());
    }
    let input = match encode(kind, state) {
        Ok(input) => input,
        Err(e) => return tolerate(kind, e),
    };
    for (index, hook) in list.iter().enumerate() {
        let result = shim::run_one(hook, &input).await;
        settle(kind, index, hook, result)?;
    }
    Ok(())
}

/// The same as [`run`] for a single-threaded process that reaps its own
/// children (it waits for each hook with `waitpid` on that hook's pid).
///
/// Blocks until the hooks are done; starts no threads. Must not be used in
/// the shim, whose reaper would steal the exits.
pub fn run_blocking(kind: HookKind, hooks: &Hooks, state: &State) -> Result<(), HookError> {
    let list = kind.hooks(hooks);
    if list.is_empty() {
        return Ok(());
    }
    let input = match encode(kind, state) {
        Ok(input) => input,
        Err(e) => return tolerate(kind, e),
    };
    for (index, hook) in list.iter().enumerate() {
        let result = blocking::run_one(hook, &input);
        settle(kind, index, hook, result)?;
    }
    Ok(())
}

/// The state as the hooks receive it on stdin.
fn encode(kind: HookKind, state: &State) -> Result<Vec<u8>, HookError> {
    serde_json::to_vec(state).map_err(|error| HookError::State { kind, error })
}

/// Turns one hook's result into the list's: an error for the kinds that fail
/// the operation, a warning for the others.
fn settle(
    kind: HookKind,
    index: usize,
    hook: &Hook,
    result: Result<Ended, HookFailure>,
) -> Result<(), HookError> {
    match result.and_then(Ended::judge) {
        Ok(()) => {
            log::debug!("{kind} hook {index} ({}) succeeded", hook.path().display());
            Ok(())
        }
        Err(cause) => tolerate(
            kind,
            HookError::Hook {
                kind,
                index,
                path: hook.path().clone(),
                cause,
            },
        ),
    }
}

/// Returns `error` for the kinds that fail the operation, logs it otherwise.
fn tolerate(kind: HookKind, error: HookError) -> Result<(), HookError> {
    if kind.fails_operation() {
        Err(error)
    } else {
        log::warn!("{error} (ignored: {kind} hooks cannot fail the container)");
        Ok(())
    }
}
