//! Runtime classes: chosen by the runtime name (shim binary name), the
//! configuration file containerd passes (`ctr run --runtime-config-path`)
//! and the `io.strata.runtime-class` annotation; a hypervisor this build
//! lacks and broken configuration files fail Create cleanly.

use std::path::PathBuf;

use strata_e2e::{assert_code, run_case, CmdOutput, Containerd, RunOptions, STRATA};

const NATIVE_RUNTIME: &str = "io.containerd.strata-native.v2";
const INTERPOSE_RUNTIME: &str = "io.containerd.strata-interpose.v2";
/// Where scripts/guest.sh puts the microvm class's guest files.
const GUEST_DIR: &str = "/var/lib/strata/microvm";

/// Writes a configuration file into the fixture directory.
fn write_config(c: &Containerd, name: &str, text: &str) -> PathBuf {
    c.write_config(name, text).unwrap()
}

/// `RunOptions` that pass `config` as the runtime options' `ConfigPath`.
fn with_config(opts: RunOptions, config: &std::path::Path) -> RunOptions {
    opts.runtime_config(config)
}

/// Runs `opts`, which must fail Create; returns the output after checking
/// that no container, task, process, mount, cgroup or socket is left.
#[track_caller]
fn run_failing(c: &Containerd, opts: &RunOptions) -> CmdOutput {
    let before = c.snapshot();
    let out = c.run(opts).unwrap();
    assert_ne!(out.code, 0, "the container ran: {out}");
    assert!(
        c.containers().unwrap().is_empty(),
        "container left registered after {out}"
    );
    assert!(c.tasks().unwrap().is_empty(), "task left after {out}");
    c.assert_no_leftovers(&before);
    out
}

/// Runs `echo` with `opts` and checks its output.
#[track_caller]
fn run_echo(c: &Containerd, opts: RunOptions, word: &str) {
    let out = c.run(&opts).unwrap();
    assert_code(&out, 0);
    assert_eq!(out.stdout, format!("{word}\n"), "{out}");
}

/// The runtime `io.containerd.strata-native.v2` (shim binary
/// `containerd-shim-strata-native-v2`) runs containers.
#[test]
fn native_runtime_name_runs_strata() {
    run_case(STRATA, |c| {
        run_echo(
            c,
            RunOptions::new("by-name", ["echo", "native"]).runtime(NATIVE_RUNTIME),
            "native",
        );
    });
}

/// The runtime `io.containerd.strata-interpose.v2` runs the container under
/// the interposer of the embedded `interpose` class: `/proc/meminfo` shows
/// the container's memory limit rather than the host's memory.
#[test]
fn interpose_runtime_name_runs_the_interposer_strata() {
    run_case(STRATA, |c| {
        let meminfo = |opts: RunOptions| {
            let out = c.run(&opts.memory_limit(128 << 20)).unwrap();
            assert_code(&out, 0);
            out.stdout
        };
        let grep = ["grep", "MemTotal", "/proc/meminfo"];
        let interposed = meminfo(RunOptions::new("interposed", grep).runtime(INTERPOSE_RUNTIME));
        assert_eq!(interposed, "MemTotal:         131072 kB\n");
        let native = meminfo(RunOptions::new("native", grep).runtime(NATIVE_RUNTIME));
        assert_ne!(native, interposed);
    });
}

/// A configuration file with a syntax error, an unknown key or an unknown
/// backend fails Create with an error naming the file, the line and (for
/// the key errors) the key, and leaves nothing behind.
#[test]
fn broken_config_file_fails_strata() {
    run_case(STRATA, |c| {
        let cases: [(&str, &str, usize, Option<&str>); 3] = [
            (
                "syntax.toml",
                "default_class = \"fast\"\n\n[classes.fast]\nbackend = \"native\n",
                4,
                None,
            ),
            (
                "unknown-key.toml",
                "default_class = \"fast\"\n\n[classes.fast]\nbackend = \"native\"\n\n\
                 [classes.slow]\nbakend = \"native\"\n",
                7,
                Some("classes.slow.bakend"),
            ),
            (
                "unknown-backend.toml",
                "# a comment\ndefault_class = \"fast\"\n[classes.fast]\nbackend = \"qemu\"\n",
                4,
                Some("classes.fast.backend"),
            ),
        ];
        for (i, (name, text, line, key)) in cases.into_iter().enumerate() {
            let path = write_config(c, name, text);
            let out = run_failing(
                c,
                &with_config(RunOptions::new(&format!("badcfg{i}"), ["true"]), &path),
            );
            let at = format!("{}:{line}", path.display());
            assert!(
                out.stderr.contains(&at),
                "error does not point at {at}: {out}"
            );
            if let Some(key) = key {
                assert!(out.stderr.contains(key), "error does not name {key}: {out}");
            }
        }
    });
}

/// A configuration file whose default class is `fast` on the native backend
/// runs containers; an annotation naming a class it does not define fails
/// Create naming that class.
#[test]
fn config_file_default_class_strata() {
    run_case(STRATA, |c| {
        let path = write_config(
            c,
            "fast.toml",
            "default_class = \"fast\"\n\n[classes.fast]\nbackend = \"native\"\n",
        );
        run_echo(
            c,
            with_config(RunOptions::new("fast", ["echo", "fast"]), &path),
            "fast",
        );
        let out = run_failing(
            c,
            &with_config(RunOptions::new("nope", ["true"]), &path)
                .annotation(strata_e2e::RUNTIME_CLASS_ANNOTATION, "nope"),
        );
        assert!(
            out.stderr.contains("\"nope\""),
            "error does not name the class: {out}"
        );
        // The class named by the annotation is not defined in this file, so
        // there is no fallback to `fast` or to the built-in classes.
        let out = run_failing(
            c,
            &with_config(RunOptions::new("native-ann", ["true"]), &path)
                .annotation(strata_e2e::RUNTIME_CLASS_ANNOTATION, "native"),
        );
        assert!(out.stderr.contains("class \"native\""), "{out}");
    });
}

/// A microvm class on the built-in monitor, chosen by annotation. On a host
/// without hardware virtualization Create fails naming the reason the
/// host check gives (e.g. kvm_pvm) and leaves nothing behind; on a host
/// with it, the container runs in a guest kernel of its own. Either way the
/// same file's native default class still runs.
#[test]
fn builtin_hypervisor_by_annotation_strata() {
    let host = strata_vmm::check::check();
    run_case(STRATA, |c| {
        let path = write_config(
            c,
            "vm.toml",
            "default_class = \"plain\"\n\n[classes.plain]\nbackend = \"native\"\n\n\
             [classes.vm]\nbackend = \"microvm\"\n[classes.vm.microvm]\nhypervisor = \"builtin\"\n",
        );
        let opts = with_config(RunOptions::new("vm", ["uname", "-r"]), &path)
            .annotation(strata_e2e::RUNTIME_CLASS_ANNOTATION, "vm");
        match &host {
            Err(reason) => {
                let out = run_failing(c, &opts);
                assert!(out.stderr.contains("\"builtin\""), "{out}");
                assert!(out.stderr.contains(&reason.to_string()), "{out}");
            }
            Ok(()) => {
                let release = std::fs::read_to_string(format!("{GUEST_DIR}/kernel-release"));
                match release {
                    Ok(release) => {
                        let out = c.run(&opts).unwrap();
                        assert_code(&out, 0);
                        assert_eq!(out.stdout.trim_end(), release.trim(), "{out}");
                    }
                    Err(e) => println!("skipped the builtin run: no guest kernel-release: {e}"),
                }
            }
        }
        run_echo(
            c,
            with_config(RunOptions::new("plain", ["echo", "plain"]), &path),
            "plain",
        );
    });
}

/// The class comes from the annotation first, then the runtime (binary)
/// name, then `default_class`; the kernel release each interpose class
/// reports shows which one ran.
#[test]
fn class_precedence_strata() {
    run_case(STRATA, |c| {
        let path = write_config(
            c,
            "precedence.toml",
            "default_class = \"dflt\"\n\n[classes.dflt]\nbackend = \"interpose\"\n\
             [classes.dflt.interpose]\nkernel_release = \"1.0-default\"\n\n\
             [classes.marked]\nbackend = \"interpose\"\n\
             [classes.marked.interpose]\nkernel_release = \"2.0-annotated\"\n\n\
             [classes.native]\nbackend = \"native\"\n",
        );
        let release = |opts: RunOptions| {
            let out = c.run(&with_config(opts, &path)).unwrap();
            assert_code(&out, 0);
            out.stdout.trim_end().to_owned()
        };
        // No annotation, generic runtime name: the default class.
        assert_eq!(
            release(RunOptions::new("dflt", ["uname", "-r"])),
            "1.0-default"
        );
        // The runtime name beats the default class.
        let named = release(RunOptions::new("named", ["uname", "-r"]).runtime(NATIVE_RUNTIME));
        assert!(!named.is_empty() && named != "1.0-default", "{named}");
        // The annotation beats the runtime name.
        let annotated = release(
            RunOptions::new("annotated", ["uname", "-r"])
                .runtime(NATIVE_RUNTIME)
                .annotation(strata_e2e::RUNTIME_CLASS_ANNOTATION, "marked"),
        );
        assert_eq!(annotated, "2.0-annotated");
    });
}
