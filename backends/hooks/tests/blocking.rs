//! `run_blocking`, as a container's init uses it: the caller reaps its own
//! children. No reaper runs in this binary.

#[macro_use]
mod common;

use strata_hooks::run_blocking;

macro_rules! blocking_test {
    ($name:ident) => {
        #[test]
        fn $name() {
            let case = common::$name();
            let started = std::time::Instant::now();
            let result = run_blocking(case.kind, &case.hooks, &case.state);
            let elapsed = started.elapsed();
            case.verify(result, elapsed);
        }
    };
}

for_each_scenario!(blocking_test);
