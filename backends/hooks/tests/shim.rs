//! `run`, as the shim uses it: hook exits come from the global reaper.
//!
//! The reaper is process-wide and collects every child of this test binary,
//! so every test here runs its hooks through `run`, which claims exits from
//! it. The `run_blocking` tests live in another binary for that reason.

#[macro_use]
mod common;

use std::sync::OnceLock;

use strata_hooks::run;

/// Starts the reaper once, on a runtime of its own that outlives the
/// per-test runtimes of `#[tokio::test]`.
fn start_reaper() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                strata_backend::reaper::start().unwrap();
                ready_tx.send(()).unwrap();
                std::future::pending::<()>().await
            });
        });
        ready_rx.recv().unwrap();
    });
}

macro_rules! shim_test {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            start_reaper();
            let case = common::$name();
            let started = std::time::Instant::now();
            let result = run(case.kind, &case.hooks, &case.state).await;
            let elapsed = started.elapsed();
            case.verify(result, elapsed);
        }
    };
}

for_each_scenario!(shim_test);
