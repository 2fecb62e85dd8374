//! OCI `linux.seccomp` for Strata backends: compiles the profile into a
//! kernel filter, loads it into the container's process, and hands the
//! user-notification listener to the seccomp agent at `listenerPath`.
//!
//! # Why libseccomp
//!
//! The profiles containers are run with (Docker's and containerd's defaults,
//! and everything derived from them) are written against libseccomp's
//! semantics: the OCI spec names its actions, architectures and operators
//! after libseccomp's constants. libseccomp is the reference implementation
//! of those semantics, so the filter is compiled with it rather than with a
//! BPF generator of our own. It resolves each syscall name to its number on
//! every listed architecture (and ignores names an architecture lacks),
//! rewrites the multiplexed `socketcall`/`ipc` syscalls of 32-bit ABIs,
//! splits 64-bit argument comparisons (masks included) into the 32-bit
//! halves classic BPF can test, orders rules by the kernel's action
//! priorities, and returns the user-notification listener fd when a rule
//! asks for `SCMP_ACT_NOTIFY`. Reproducing all that by hand would be a
//! second, unreviewed copy of the semantics the profiles depend on.
//!
//! # Use
//!
//! ```no_run
//! # fn main() -> Result<(), strata_seccomp::SeccompError> {
//! # let seccomp = oci_spec::runtime::LinuxSeccomp::default();
//! // In the runtime, before forking the container's process:
//! let filter = strata_seccomp::Filter::compile(&seccomp)?;
//! // In the container's process, just before exec:
//! if let Some(listener) = filter.load()? {
//!     // Hand `listener` to an unfiltered runtime process, which calls
//!     // `strata_seccomp::send_listener` with the container's state.
//!     # drop(listener);
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod filter;
mod listener;

#[cfg(test)]
mod tests;

pub use error::SeccompError;
pub use filter::Filter;
pub use listener::{process_state, send_listener};
