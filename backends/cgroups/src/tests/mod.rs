//! Tests: against a fake cgroupfs tree (both versions) and against the
//! running kernel.

mod fake;
mod host;
mod v1;
mod v2;
