//! Tests: against a fake cgroupfs tree (both versions) and against the
//! running kernel.

mod devices;
mod fake;
mod host;
mod notify;
mod resources;
mod spec;
mod stats;
mod v1;
mod v2;
