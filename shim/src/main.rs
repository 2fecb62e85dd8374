//! `containerd-shim-strata-v2`: the Strata containerd shim.
//!
//! containerd runs this binary (or a `containerd-shim-strata-<class>-v2`
//! symlink to it) to start, serve and clean up containers; the native
//! backend re-executes it with `init` to build each container process, the
//! interpose backend with `supervise` for each supervisor, and the microvm
//! backend with `vmm` for each VM on the built-in VMM.

mod class;
mod error;
mod events;
mod interpose;
mod metrics;
mod rootfs;
mod service;
mod shim;
mod tasks;

/// The runtime name containerd knows this shim by.
const RUNTIME_ID: &str = "io.containerd.strata.v2";

fn main() {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == strata_native::INIT_ARG)
    {
        strata_native::init_main();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == interpose::SUPERVISE_ARG)
    {
        interpose::supervise_main();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == strata_microvm::VMM_ARG)
    {
        std::process::exit(strata_vmm::command::main(std::env::args().skip(2)).into());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: starting the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let config = containerd_shim::Config {
        // The backend's reaper collects every child; see strata_backend::reaper.
        no_reaper: true,
        ..Default::default()
    };
    runtime.block_on(containerd_shim::asynchronous::run::<shim::StrataShim>(
        RUNTIME_ID,
        Some(config),
    ));
}
