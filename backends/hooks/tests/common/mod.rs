//! Hook scenarios shared by the tests of `run` and of `run_blocking`.
//!
//! Each scenario writes its hooks as shell scripts into a temporary
//! directory and returns a [`Case`]: what to run and how to check the result.
//! The two test binaries only differ in how they run a case.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    ContainerState, Hook, HookBuilder, Hooks, HooksBuilder, State, StateBuilder,
};
use strata_hooks::{HookError, HookFailure, HookKind};
use tempfile::TempDir;

/// How to check a case's result: its directory, the result, how long it took.
type Verify = Box<dyn FnOnce(&Path, Result<(), HookError>, Duration)>;

/// One scenario: hooks of one kind, the state they get, and the checks.
pub struct Case {
    /// The kind to run.
    pub kind: HookKind,
    /// The hooks (only `kind` is filled in).
    pub hooks: Hooks,
    /// The container state handed to the hooks.
    pub state: State,
    dir: TempDir,
    verify: Verify,
}

impl Case {
    /// Checks the result of running this case, then removes its directory.
    pub fn verify(self, result: Result<(), HookError>, elapsed: Duration) {
        (self.verify)(self.dir.path(), result, elapsed);
    }
}

/// Builds a case of `kind` whose hooks are made by `hooks` in a fresh
/// directory.
fn case(
    kind: HookKind,
    state: State,
    hooks: impl FnOnce(&Path) -> Vec<Hook>,
    verify: impl FnOnce(&Path, Result<(), HookError>, Duration) + 'static,
) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let list = hooks(dir.path());
    let builder = HooksBuilder::default();
    let builder = match kind {
        HookKind::CreateRuntime => builder.create_runtime(list),
        HookKind::CreateContainer => builder.create_container(list),
        HookKind::StartContainer => builder.start_container(list),
        HookKind::Poststart => builder.poststart(list),
        HookKind::Poststop => builder.poststop(list),
        HookKind::Prestart => {
            #[allow(deprecated)]
            let builder = builder.prestart(list);
            builder
        }
    };
    Case {
        kind,
        hooks: builder.build().unwrap(),
        state,
        dir,
        verify: Box::new(verify),
    }
}

fn state() -> State {
    StateBuilder::default()
        .version("1.2.0")
        .id("hooked-1")
        .status(ContainerState::Created)
        .pid(4242)
        .bundle("/run/strata/bundles/hooked-1")
        .annotations(HashMap::from([("team".to_string(), "storage".to_string())]))
        .build()
        .unwrap()
}

/// Writes an executable `/bin/sh` script named `name` into `dir`.
///
/// A child process writes it: a file this process held open for writing
/// would be inherited by whatever another test thread forks at that moment,
/// and running the script would then fail with ETXTBSY.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let mut writer = Command::new("/bin/sh")
        .args([
            "-c",
            "cat > \"$1\" && chmod 755 \"$1\" && echo written",
            "sh",
        ])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = writer.stdin.take().unwrap();
    stdin
        .write_all(format!("#!/bin/sh\n{body}\n").as_bytes())
        .unwrap();
    drop(stdin);
    // Success is read from the writer's output, not its exit status: the
    // hook runner's reaper, running in another test, may collect that first.
    let mut said = String::new();
    writer
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    let _ = writer.wait();
    assert_eq!(said, "written\n", "cannot write {path:?}");
    path
}

fn hook(path: &Path) -> Hook {
    HookBuilder::default().path(path).build().unwrap()
}

fn timed_hook(path: &Path, seconds: i64) -> Hook {
    HookBuilder::default()
        .path(path)
        .timeout(seconds)
        .build()
        .unwrap()
}

/// A hook that appends `mark` to the file `order` in `dir`.
fn marker(dir: &Path, mark: &str) -> Hook {
    let order = dir.join("order");
    let path = script(
        dir,
        &format!("mark-{mark}"),
        &format!("echo {mark} >> '{}'", order.display()),
    );
    hook(&path)
}

fn order(dir: &Path) -> String {
    fs::read_to_string(dir.join("order")).unwrap_or_default()
}

fn read_pid(path: &Path) -> i32 {
    fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

/// Whether `pid` is gone or only a zombie waiting for somebody else to reap it.
fn dead(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The failure inside a hook error, after checking which hook it names.
fn failure(
    result: Result<(), HookError>,
    want_kind: HookKind,
    want_index: usize,
    want_path: &Path,
) -> (String, HookFailure) {
    let err = result.expect_err("the hook should have failed");
    let message = err.to_string();
    match err {
        HookError::Hook {
            kind,
            index,
            path,
            cause,
        } => {
            assert_eq!(kind, want_kind, "{message}");
            assert_eq!(index, want_index, "{message}");
            assert_eq!(path, want_path, "{message}");
            assert!(
                message.contains(&want_path.display().to_string()),
                "{message}"
            );
            (message, cause)
        }
        other => panic!("unexpected error {other:?}"),
    }
}

/// The hook gets the state as JSON on stdin.
pub fn state_arrives_on_stdin() -> Case {
    case(
        HookKind::CreateRuntime,
        state(),
        |dir| {
            let out = dir.join("state.json");
            vec![hook(&script(
                dir,
                "save-state",
                &format!("/bin/cat > '{}'", out.display()),
            ))]
        },
        |dir, result, _| {
            result.unwrap();
            let saved: serde_json::Value =
                serde_json::from_slice(&fs::read(dir.join("state.json")).unwrap()).unwrap();
            assert_eq!(saved["ociVersion"], "1.2.0");
            assert_eq!(saved["id"], "hooked-1");
            assert_eq!(saved["status"], "created");
            assert_eq!(saved["pid"], 4242);
            assert_eq!(saved["bundle"], "/run/strata/bundles/hooked-1");
            assert_eq!(saved["annotations"]["team"], "storage");
        },
    )
}

/// argv (including argv[0]) is exactly `args`; the hook is `/bin/sh` running
/// a script, so its own command line shows what it was given.
pub fn args_are_passed_exactly() -> Case {
    case(
        HookKind::CreateContainer,
        state(),
        |dir| {
            let out = dir.join("cmdline");
            let body = script(
                dir,
                "save-cmdline",
                &format!("/bin/cat /proc/$$/cmdline > '{}'", out.display()),
            );
            let args = vec![
                "hook-argv0".to_string(),
                body.display().to_string(),
                "two words".to_string(),
                String::new(),
                "*".to_string(),
            ];
            vec![HookBuilder::default()
                .path("/bin/sh")
                .args(args)
                .build()
                .unwrap()]
        },
        |dir, result, _| {
            result.unwrap();
            let cmdline = fs::read(dir.join("cmdline")).unwrap();
            let script = dir.join("save-cmdline");
            let want = format!("hook-argv0\0{}\0two words\0\0*\0", script.display());
            assert_eq!(String::from_utf8(cmdline).unwrap(), want);
        },
    )
}

/// The environment is exactly `env`, in its order and with its repeats:
/// nothing of ours leaks in.
pub fn env_is_exactly_the_given_one() -> Case {
    case(
        HookKind::StartContainer,
        state(),
        |dir| {
            let out = dir.join("environ");
            let path = script(
                dir,
                "save-env",
                &format!("/bin/cat /proc/$$/environ > '{}'", out.display()),
            );
            vec![HookBuilder::default()
                .path(path)
                .env(vec![
                    "STRATA_B=two words=x".to_string(),
                    "STRATA_A=1".to_string(),
                    "STRATA_EMPTY=".to_string(),
                    "STRATA_A=again".to_string(),
                ])
                .build()
                .unwrap()]
        },
        |dir, result, _| {
            result.unwrap();
            let environ = String::from_utf8(fs::read(dir.join("environ")).unwrap()).unwrap();
            assert_eq!(
                environ,
                "STRATA_B=two words=x\0STRATA_A=1\0STRATA_EMPTY=\0STRATA_A=again\0"
            );
        },
    )
}

/// Hooks of one kind run one after the other, in the listed order.
pub fn hooks_run_in_order() -> Case {
    case(
        HookKind::Poststart,
        state(),
        |dir| {
            ["first", "second", "third", "fourth"]
                .iter()
                .map(|mark| marker(dir, mark))
                .collect()
        },
        |dir, result, _| {
            result.unwrap();
            assert_eq!(order(dir), "first\nsecond\nthird\nfourth\n");
        },
    )
}

/// A failing createRuntime hook fails the list with its status and stderr,
/// and the hooks after it do not run.
pub fn a_failure_stops_the_list() -> Case {
    case(
        HookKind::CreateRuntime,
        state(),
        |dir| {
            vec![
                marker(dir, "before"),
                hook(&script(
                    dir,
                    "fails",
                    "echo said-on-stdout\necho the-network-is-gone >&2\nexit 3",
                )),
                marker(dir, "after"),
            ]
        },
        |dir, result, _| {
            let (message, cause) = failure(result, HookKind::CreateRuntime, 1, &dir.join("fails"));
            assert!(
                matches!(cause, HookFailure::Exited { code: 3, .. }),
                "{message}"
            );
            assert!(message.starts_with("createRuntime hook 1 ("), "{message}");
            assert!(message.contains("exited with status 3"), "{message}");
            assert!(message.contains("the-network-is-gone"), "{message}");
            assert_eq!(order(dir), "before\n");
        },
    )
}

/// A hook that prints far more than a pipe holds neither blocks nor floods
/// the message: only the end of its stderr is kept.
pub fn only_the_end_of_the_output_is_kept() -> Case {
    case(
        HookKind::Prestart,
        state(),
        |dir| {
            vec![hook(&script(
                dir,
                "chatty",
                "echo THE-START >&2\n\
                 i=0\n\
                 while [ $i -lt 8000 ]; do echo \"noise line $i\" >&2; i=$((i+1)); done\n\
                 echo THE-END >&2\n\
                 exit 1",
            ))]
        },
        |dir, result, _| {
            let (message, _) = failure(result, HookKind::Prestart, 0, &dir.join("chatty"));
            assert!(message.contains("exited with status 1"), "{message}");
            assert!(message.trim_end().ends_with("THE-END"), "{message}");
            assert!(!message.contains("THE-START"), "{message}");
            assert!(message.len() < 4096 + 200, "{} bytes", message.len());
        },
    )
}

/// A hook killed by a signal is reported as such.
pub fn a_signal_death_is_reported() -> Case {
    case(
        HookKind::CreateContainer,
        state(),
        |dir| vec![hook(&script(dir, "suicide", "kill -TERM $$\nsleep 5"))],
        |dir, result, _| {
            let (message, cause) =
                failure(result, HookKind::CreateContainer, 0, &dir.join("suicide"));
            assert!(
                matches!(cause, HookFailure::Signaled { signal: 15, .. }),
                "{message}"
            );
            assert!(
                message.contains("killed by signal 15 (SIGTERM)"),
                "{message}"
            );
        },
    )
}

/// poststop failures (a bad status, a missing file) are only logged; the
/// hooks after them still run.
pub fn poststop_failures_are_tolerated() -> Case {
    case(
        HookKind::Poststop,
        state(),
        |dir| {
            vec![
                hook(&script(dir, "fails", "exit 7")),
                marker(dir, "after-failure"),
                hook(&dir.join("does-not-exist")),
                marker(dir, "after-missing"),
            ]
        },
        |dir, result, _| {
            result.unwrap();
            assert_eq!(order(dir), "after-failure\nafter-missing\n");
        },
    )
}

/// A hook that outlives its timeout is killed, with what it started, and the
/// failure names the timeout; it does not take much longer than the limit.
pub fn a_timeout_kills_the_hook() -> Case {
    case(
        HookKind::CreateRuntime,
        state(),
        |dir| {
            let body = format!(
                "echo $$ > '{pid}'\n/bin/sleep 30 &\necho $! > '{sleeper}'\nwait",
                pid = dir.join("pid").display(),
                sleeper = dir.join("sleeper").display(),
            );
            vec![
                timed_hook(&script(dir, "sleepy", &body), 1),
                marker(dir, "after"),
            ]
        },
        |dir, result, elapsed| {
            let (message, cause) = failure(result, HookKind::CreateRuntime, 0, &dir.join("sleepy"));
            assert!(
                matches!(cause, HookFailure::TimedOut { seconds: 1, .. }),
                "{message}"
            );
            assert!(message.contains("timed out after 1s"), "{message}");
            assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
            assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
            let pid = read_pid(&dir.join("pid"));
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "hook {pid} is still there"
            );
            // The background sleep was orphaned; somebody else reaps it.
            let sleeper = read_pid(&dir.join("sleeper"));
            let since = Instant::now();
            while !dead(sleeper) {
                assert!(
                    since.elapsed() < Duration::from_secs(5),
                    "sleep {sleeper} survived its hook's timeout"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(order(dir), "");
        },
    )
}

/// A hook that finishes within its timeout succeeds, and is reaped.
pub fn finished_hooks_are_reaped() -> Case {
    case(
        HookKind::StartContainer,
        state(),
        |dir| {
            let body = format!("echo $$ > '{}'", dir.join("pid").display());
            vec![timed_hook(&script(dir, "quick", &body), 10)]
        },
        |dir, result, elapsed| {
            result.unwrap();
            assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
            let pid = read_pid(&dir.join("pid"));
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "hook {pid} was not reaped"
            );
        },
    )
}

/// A hook that never reads its stdin is fine even when the state is larger
/// than a pipe holds.
pub fn stdin_may_be_ignored() -> Case {
    let mut big = state();
    big.set_annotations(Some(HashMap::from([(
        "blob".to_string(),
        "x".repeat(512 * 1024),
    )])));
    case(
        HookKind::CreateRuntime,
        big,
        |dir| vec![hook(&script(dir, "deaf", "exit 0")), marker(dir, "next")],
        |dir, result, elapsed| {
            result.unwrap();
            assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
            assert_eq!(order(dir), "next\n");
        },
    )
}

/// A path that does not exist is named in the error.
pub fn a_missing_path_is_named() -> Case {
    case(
        HookKind::CreateContainer,
        state(),
        |dir| vec![hook(&dir.join("no-such-hook"))],
        |dir, result, _| {
            let (message, cause) = failure(
                result,
                HookKind::CreateContainer,
                0,
                &dir.join("no-such-hook"),
            );
            match cause {
                HookFailure::Spawn(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
                other => panic!("unexpected cause {other:?}"),
            }
            assert!(message.contains("cannot be started"), "{message}");
        },
    )
}

/// A file that is not executable is named in the error.
pub fn a_non_executable_path_is_named() -> Case {
    case(
        HookKind::StartContainer,
        state(),
        |dir| {
            let path = script(dir, "not-executable", "exit 0");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            vec![hook(&path)]
        },
        |dir, result, _| {
            let (message, cause) = failure(
                result,
                HookKind::StartContainer,
                0,
                &dir.join("not-executable"),
            );
            assert!(matches!(cause, HookFailure::Spawn(_)), "{message}");
        },
    )
}

/// A relative path is refused rather than looked up somewhere.
pub fn a_relative_path_is_refused() -> Case {
    case(
        HookKind::CreateRuntime,
        state(),
        |_| vec![hook(Path::new("sh"))],
        |_, result, _| {
            let (message, cause) = failure(result, HookKind::CreateRuntime, 0, Path::new("sh"));
            assert!(matches!(cause, HookFailure::RelativePath), "{message}");
        },
    )
}

/// With no hooks of a kind, nothing happens.
pub fn no_hooks_is_fine() -> Case {
    case(
        HookKind::CreateRuntime,
        state(),
        |_| Vec::new(),
        |_, result, _| result.unwrap(),
    )
}

/// Invokes `$test!(name)` for every scenario, so that each test binary
/// declares one test per scenario in its own way.
macro_rules! for_each_scenario {
    ($test:ident) => {
        $test!(state_arrives_on_stdin);
        $test!(args_are_passed_exactly);
        $test!(env_is_exactly_the_given_one);
        $test!(hooks_run_in_order);
        $test!(a_failure_stops_the_list);
        $test!(only_the_end_of_the_output_is_kept);
        $test!(a_signal_death_is_reported);
        $test!(poststop_failures_are_tolerated);
        $test!(a_timeout_kills_the_hook);
        $test!(finished_hooks_are_reaped);
        $test!(stdin_may_be_ignored);
        $test!(a_missing_path_is_named);
        $test!(a_non_executable_path_is_named);
        $test!(a_relative_path_is_refused);
        $test!(no_hooks_is_fine);
    };
}
