//! `strata-vmm`: runs one microVM with the built-in VMM; the command line
//! and what the process does are [`strata_vmm::command`]'s.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(strata_vmm::command::main(std::env::args().skip(1)))
}
