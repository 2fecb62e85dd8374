//! Commands racing on one container: every command either answers
//! correctly or fails cleanly, and the state is never corrupted.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{unique_id, Fixture};

#[test]
fn state_and_kill_race_a_forced_delete() {
    let fx = Arc::new(Fixture::new("race", &["sleep", "100"]));
    let id = unique_id("race");
    fx.start(&id);
    let deleted = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..10)
        .map(|n| {
            let fx = fx.clone();
            let id = id.clone();
            let deleted = deleted.clone();
            std::thread::spawn(move || {
                let mut answers = 0;
                for round in 0..20 {
                    let verb = if (n + round) % 2 == 0 {
                        "state"
                    } else {
                        "kill"
                    };
                    let out = if verb == "state" {
                        fx.strata(&["state", &id])
                    } else {
                        fx.strata(&["kill", &id, "0"])
                    };
                    match out.code {
                        0 if verb == "state" => {
                            let state = out.json();
                            assert_eq!(state["id"], id.as_str());
                            let status = state["status"].as_str().expect("status");
                            assert!(
                                ["running", "stopped"].contains(&status),
                                "{}",
                                out.describe()
                            );
                            answers += 1;
                        }
                        0 => answers += 1,
                        1 => {
                            let clean = out.stderr.contains("does not exist")
                                || out.stderr.contains("is not running");
                            assert!(clean, "unclean failure: {}", out.describe());
                            assert!(out.stdout.is_empty(), "{}", out.describe());
                        }
                        _ => panic!("unexpected exit: {}", out.describe()),
                    }
                    if deleted.load(Ordering::Relaxed) && round > 10 {
                        break;
                    }
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    fx.strata(&["delete", "--force", &id]).ok();
    deleted.store(true, Ordering::Relaxed);
    let answered: usize = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    assert!(answered > 0, "some commands ran before the delete");
    fx.strata(&["state", &id])
        .fails_with(&format!("container \"{id}\" does not exist"));
    let fx = Arc::try_unwrap(fx).unwrap_or_else(|_| panic!("fixture still shared"));
    fx.finish();
}

#[test]
fn containers_are_independent() {
    let fx = Arc::new(Fixture::new("parallel", &["sh", "-c", "echo $0", "x"]));
    // One bundle, several ids: the cgroups path is set per id, so the
    // bundle is edited under a lock and each create reads it at once.
    let lock = Arc::new(std::sync::Mutex::new(()));
    let runs: Vec<_> = (0..4)
        .map(|n| {
            let fx = fx.clone();
            let lock = lock.clone();
            std::thread::spawn(move || {
                let id = unique_id(&format!("par{n}"));
                let running = {
                    let _guard = lock.lock().expect("lock");
                    let running = fx.spawn_run(&id, &[]);
                    // Give the run time to read config.json before the next edit.
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    running
                };
                running.wait(common::COMMAND_TIMEOUT)
            })
        })
        .collect();
    for run in runs {
        let out = run.join().expect("run");
        assert_eq!(out.code, 0, "{}", out.describe());
        assert_eq!(out.stdout, "x\n");
    }
    let list = fx.strata(&["list", "--format", "json"]).ok().json();
    assert_eq!(list, serde_json::json!([]), "all deleted");
    let fx = Arc::try_unwrap(fx).unwrap_or_else(|_| panic!("fixture still shared"));
    fx.finish();
}
