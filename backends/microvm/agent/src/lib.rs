//! Strata's guest agent: PID 1 of a microVM, which mounts the container's
//! disk, runs its processes and serves their stdio and exits to the host.
//!
//! The library part is the wire [`protocol`], the ttrpc server loop
//! ([`rpc`]) and the [`console`] port's opening, shared with the host side
//! (`strata-microvm`) and the tests; the agent itself is the
//! `strata-agent` binary, built static and placed at `/init` of the
//! guest's initramfs.

pub mod console;
pub mod protocol;
pub mod rpc;
