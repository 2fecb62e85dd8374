//! The interpose class through containerd: hidden and read-only paths,
//! network policy, the container's own view of memory and cpus, the
//! syscalls denied outright, exec'd processes, a supervisor that dies, and
//! busybox working normally — each compared, where it proves the test, with
//! the same container on the native class.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use strata_e2e::procfs;
use strata_e2e::{assert_code, run_case, CmdOutput, Containerd, RunOptions, STRATA};

/// The class under test, plus a native class for contrast.
const CONFIG: &str = r#"default_class = "sandboxed"

[classes.plain]
backend = "native"

[classes.sandboxed]
backend = "interpose"

[classes.sandboxed.interpose]
hidden = ["/srv/hidden", "/srv/note.secret"]
read_only = ["/srv/ro"]
kernel_release = "4.19.0-strata"

[classes.sandboxed.interpose.network]
deny = ["127.0.0.1/32:9090"]
"#;

const SECRET: &str = "top secret";

/// A host directory mounted at `/srv` in the container, holding hidden,
/// read-only and ordinary files.
struct Srv {
    dir: PathBuf,
}

impl Srv {
    fn new(c: &Containerd) -> Srv {
        let dir = c.dir().join("srv");
        fs::create_dir_all(dir.join("hidden")).unwrap();
        fs::create_dir_all(dir.join("ro")).unwrap();
        fs::write(dir.join("hidden/secret"), SECRET).unwrap();
        fs::write(dir.join("note.secret"), SECRET).unwrap();
        fs::write(dir.join("visible"), "hello\n").unwrap();
        fs::write(dir.join("ro/existing"), "kept\n").unwrap();
        Srv { dir }
    }

    /// Options for a container of `class` that runs `script` with /srv mounted.
    fn run(&self, c: &Containerd, class: &str, id: &str, script: &str) -> RunOptions {
        let config = c.write_config("interpose.toml", CONFIG).unwrap();
        RunOptions::new(id, ["sh", "-c", script])
            .runtime_config(&config)
            .annotation(strata_e2e::RUNTIME_CLASS_ANNOTATION, class)
            .flag("--mount")
            .flag(&format!(
                "type=bind,src={},dst=/srv,options=rbind:rw",
                self.dir.display()
            ))
    }
}

/// Runs `opts` to completion and returns its output, requiring exit 0.
#[track_caller]
fn run_ok(c: &Containerd, opts: &RunOptions) -> CmdOutput {
    let out = c.run(opts).unwrap();
    assert_code(&out, 0);
    out
}

/// Waits until containerd's log (where the shim's log goes) holds `text`.
#[track_caller]
fn wait_for_log(c: &Containerd, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.log_tail(2000).contains(text) {
        assert!(
            Instant::now() < deadline,
            "{text:?} not in the log:\n{}",
            c.log_tail(60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Ordinary work: directories, files, relative paths, pipes, /proc.
#[test]
fn busybox_works_under_the_interposer() {
    run_case(STRATA, |c| {
        let srv = Srv::new(c);
        let script = "set -e
ls /bin | grep -c busybox
head -n1 /etc/passwd
mkdir -p /tmp/d/e && cd /tmp/d && echo hi > e/f && cat ./e/f && ln -s e/f link && cat link
mv e/f e/g && stat -c %s e/g && rm -r /tmp/d
grep -c '^Name:' /proc/self/status
cat /srv/visible
echo done";
        let out = run_ok(c, &srv.run(c, "sandboxed", "busy", script));
        assert_eq!(
            out.stdout, "1\nroot:x:0:0:root:/root:/bin/sh\nhi\nhi\n3\n1\nhello\ndone\n",
            "{out}"
        );
    });
}

/// Hidden paths look absent to open, stat, exec and listing, and their
/// content never reaches the container; on the native class the same
/// mount shows them, which proves the test's set-up.
#[test]
fn hidden_paths_are_absent() {
    run_case(STRATA, |c| {
        let srv = Srv::new(c);
        let script = "cat /srv/visible
cat /srv/hidden/secret 2>&1
ls /srv/hidden 2>&1
[ -e /srv/note.secret ] && echo present || echo absent
stat /srv/note.secret 2>&1
/srv/hidden/secret 2>&1
cd /srv && cat hidden/secret 2>&1
true";
        let out = run_ok(c, &srv.run(c, "sandboxed", "hidden", script));
        assert!(!out.stdout.contains(SECRET), "{out}");
        assert!(out.stdout.starts_with("hello\n"), "{out}");
        assert!(out.stdout.contains("absent"), "{out}");
        // cat, ls, stat and the relative cat; the shell says "not found".
        assert_eq!(
            out.stdout.matches("No such file or directory").count(),
            4,
            "{out}"
        );
        assert!(
            out.stdout.contains("/srv/hidden/secret: not found"),
            "{out}"
        );

        let out = run_ok(c, &srv.run(c, "plain", "shown", "cat /srv/hidden/secret"));
        assert_eq!(out.stdout, SECRET, "{out}");
    });
}

/// Writes under a read-only path fail with EROFS and change nothing; the
/// rest of the mount stays writable.
#[test]
fn read_only_paths_refuse_writes() {
    run_case(STRATA, |c| {
        let srv = Srv::new(c);
        let script = "echo x > /srv/ro/new 2>&1
rm /srv/ro/existing 2>&1
mkdir /srv/ro/d 2>&1
mv /srv/ro/existing /srv/moved 2>&1
cat /srv/ro/existing
echo y > /srv/written && cat /srv/written";
        let out = run_ok(c, &srv.run(c, "sandboxed", "ro", script));
        // The shell reports its own redirection on its standard error.
        let both = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(both.matches("Read-only file system").count(), 4, "{out}");
        assert!(out.stdout.ends_with("kept\ny\n"), "{out}");
        assert_eq!(
            fs::read_to_string(srv.dir.join("ro/existing")).unwrap(),
            "kept\n"
        );
        assert!(!srv.dir.join("ro/new").exists() && !srv.dir.join("ro/d").exists());
        assert_eq!(fs::read_to_string(srv.dir.join("written")).unwrap(), "y\n");
    });
}

/// In the container's own network namespace: a server on an allowed port
/// answers `wget`; connecting to the denied port is refused by the policy
/// although a server listens there.
#[test]
fn network_policy_decides_connections() {
    run_case(STRATA, |c| {
        let srv = Srv::new(c);
        let script = "mkdir -p /tmp/www && echo page > /tmp/www/index.html
httpd -p 127.0.0.1:8080 -h /tmp/www
httpd -p 127.0.0.1:9090 -h /tmp/www
sleep 0.3
wget -q -O - http://127.0.0.1:8080/
wget -q -O - http://127.0.0.1:9090/ 2>&1 || echo refused";
        let out = run_ok(c, &srv.run(c, "sandboxed", "net", script));
        assert!(out.stdout.starts_with("page\n"), "{out}");
        assert!(out.stdout.trim_end().ends_with("refused"), "{out}");
        assert_eq!(out.stdout.matches("page").count(), 1, "{out}");
        // The denial is in the shim's log, with the container and address;
        // the count of mediated calls follows when the container ends.
        wait_for_log(c, "container net: pid");
        wait_for_log(c, "127.0.0.1:9090: denied");
        wait_for_log(c, "mediated calls of net");

        let out = run_ok(c, &srv.run(c, "plain", "net-native", script));
        assert_eq!(out.stdout.matches("page").count(), 2, "{out}");
    });
}

/// `free`, `/proc/meminfo`, `nproc` and `uname -r` show the container's
/// memory limit, cpu quota and configured kernel release, not the host's.
#[test]
fn the_container_sees_its_own_machine() {
    run_case(STRATA, |c| {
        let srv = Srv::new(c);
        let script = "free -m | awk '/Mem:/ {print $2}'
grep MemTotal /proc/meminfo
nproc
uname -r
awk '{print ($1 < 600) ? \"fresh\" : \"old\"}' /proc/uptime";
        let opts = srv
            .run(c, "sandboxed", "view", script)
            .memory_limit(256 << 20)
            .flag("--cpus")
            .flag("1");
        let out = run_ok(c, &opts);
        assert_eq!(
            out.stdout, "256\nMemTotal:         262144 kB\n1\n4.19.0-strata\nfresh\n",
            "{out}"
        );
    });
}

/// Syscalls denied outright fail even for a privileged container, which
/// can make them on the native class.
#[test]
fn denied_syscalls_fail_even_when_privileged() {
    run_case(STRATA, |c| {
        let srv = Srv::new(c);
        let script = "mount -t tmpfs none /tmp 2>&1 && echo mounted
unshare -m true 2>&1 && echo unshared
true";
        let sandboxed = srv
            .run(c, "sandboxed", "denied", script)
            .flag("--privileged");
        let out = run_ok(c, &sandboxed);
        assert!(!out.stdout.contains("mounted"), "{out}");
        assert!(!out.stdout.contains("unshared"), "{out}");
        // busybox words EPERM from mount(2) its own way.
        assert!(out.stdout.contains("mount: permission denied"), "{out}");
        assert!(
            out.stdout
                .contains("unshare(0x20000): Operation not permitted"),
            "{out}"
        );

        let plain = srv.run(c, "plain", "allowed", script).flag("--privileged");
        let out = run_ok(c, &plain);
        assert!(
            out.stdout.contains("mounted") && out.stdout.contains("unshared"),
            "{out}"
        );
    });
}

/// A process exec'd into the container is supervised as its init is.
#[test]
fn exec_is_interposed_too() {
    run_case(STRATA, |c| {
        let srv = Srv::new(c);
        c.run_detached(&srv.run(c, "sandboxed", "execd", "sleep 1000"))
            .unwrap();
        let out = c
            .exec("execd", "peek", &["cat", "/srv/hidden/secret"])
            .unwrap();
        assert_ne!(out.code, 0, "{out}");
        assert!(!out.stdout.contains(SECRET), "{out}");
        assert!(out.stderr.contains("No such file or directory"), "{out}");
        let out = c.exec("execd", "look", &["cat", "/srv/visible"]).unwrap();
        assert_code(&out, 0);
        assert_eq!(out.stdout, "hello\n");
        c.kill("execd", Some("SIGKILL"), false)
            .unwrap()
            .ok()
            .unwrap();
        c.wait_status("execd", "STOPPED", Duration::from_secs(20))
            .unwrap();
        c.delete_task("execd").unwrap();
        c.delete_container("execd").unwrap();
    });
}

/// The supervisor processes of a shim: children of its server that run
/// the `supervise` command.
fn supervisors(c: &Containerd, id: &str) -> Vec<i32> {
    let Some(server) = c.shim_server(id) else {
        return Vec::new();
    };
    procfs::processes()
        .values()
        .filter(|p| p.ppid == server.pid && p.cmdline.get(1).is_some_and(|a| a == "supervise"))
        .map(|p| p.pid)
        .collect()
}

/// A supervisor that dies takes its container down (SIGKILL, so nothing of
/// it runs unsupervised), and the shim's log says why.
#[test]
fn a_dead_supervisor_stops_its_container() {
    run_case(STRATA, |c| {
        let srv = Srv::new(c);
        c.run_detached(&srv.run(c, "sandboxed", "orphan", "sleep 1000"))
            .unwrap();
        let found = supervisors(c, "orphan");
        assert_eq!(found.len(), 1, "supervisors: {found:?}");
        // SAFETY: kill takes a pid and a signal number; no memory is involved.
        assert_eq!(unsafe { libc::kill(found[0], libc::SIGKILL) }, 0);
        let task = c
            .wait_status("orphan", "STOPPED", Duration::from_secs(20))
            .unwrap();
        assert_eq!(task.status, "STOPPED");
        assert_eq!(c.delete_task("orphan").unwrap(), 137);
        c.delete_container("orphan").unwrap();
        wait_for_log(c, "must not run unsupervised");
    });
}

/// A network rule that does not parse fails Create, naming its key, and
/// leaves nothing behind.
#[test]
fn a_bad_network_rule_is_named() {
    run_case(STRATA, |c| {
        let config = c
            .write_config(
                "bad.toml",
                "default_class = \"x\"\n[classes.x]\nbackend = \"interpose\"\n\
                 [classes.x.interpose.network]\ndeny = [\"300.1.2.3/32\"]\n",
            )
            .unwrap();
        let before = c.snapshot();
        let out = c
            .run(&RunOptions::new("badrule", ["true"]).runtime_config(&config))
            .unwrap();
        assert_ne!(out.code, 0, "{out}");
        assert!(
            out.stderr.contains("classes.x.interpose.network.deny[0]"),
            "{out}"
        );
        assert!(c.containers().unwrap().is_empty(), "{out}");
        c.assert_no_leftovers(&before);
    });
}
