//! Tests: pure logic in `units`; everything else forks real targets that
//! load the filter in a chroot and runs a real supervisor for them
//! (`harness`), as root.

mod audit;
mod bench;
mod files;
mod harness;
mod net;
mod ops;
mod race;
mod shell;
mod system;
mod units;
