//! A private containerd instance for one test.
//!
//! [`Containerd::start`] creates a fresh directory under `/tmp`, writes a
//! containerd config whose root, state, gRPC and ttrpc sockets all live
//! there, links the Strata shim binaries into a `bin/` directory placed first
//! on containerd's `PATH`, starts containerd, waits until it answers, and
//! imports the busybox test image into a namespace unique to this fixture.
//!
//! Dropping the fixture tears everything down even if the test panicked:
//! containers are removed through `ctr` while containerd still answers, then
//! containerd is stopped (SIGTERM, then SIGKILL), every process that belongs
//! to this instance (or sits in one of its cgroups, which are thawed first
//! if frozen) is killed by PID, leftover runc state, mounts, cgroups
//! and shim sockets are removed, and finally the directory itself. When the
//! test panicked, the tail of containerd's debug log is printed.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};

use crate::command::{self, CmdOutput};
use crate::image::{self, BuiltImage, ImageOptions};
use crate::procfs;

/// File name of the Strata shim binary.
pub const SHIM_NAME: &str = "containerd-shim-strata-v2";

/// Runtime classes that get their own shim name
/// (`containerd-shim-strata-<class>-v2`, i.e. runtime
/// `io.containerd.strata-<class>.v2`).
pub const SHIM_CLASSES: [&str; 3] = ["native", "interpose", "microvm"];

/// Where containerd 1.6 puts shim sockets, whatever its root is.
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// Where containerd's runc shim keeps runc state, per namespace.
pub const RUNC_STATE_DIR: &str = "/run/containerd/runc";

/// Where Debian's containernetworking-plugins puts the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// The containerd namespace of containerd's CRI plugin.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// The host's cgroup mount point.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Task bundle directory of containerd's default state dir; checked too in
/// case a runtime ignores the configured state dir.
pub const DEFAULT_TASK_DIR: &str = "/run/containerd/io.containerd.runtime.v2.task";

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// How to start a [`Containerd`].
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// Runtime the test targets; used as the default `--runtime` of `ctr run`.
    pub runtime: String,
    /// Enable containerd's CRI plugin (off by default: `ctr` does not need
    /// it). Its runtime handlers are `runc`, `strata` (the default class)
    /// and `strata-<class>` for each of [`SHIM_CLASSES`], the latter
    /// `io.containerd.strata.v2` with a `ConfigPath` option naming a
    /// configuration whose `default_class` is that class.
    pub cri: bool,
    /// With `cri`: the image CRI runs as each pod's sandbox (its
    /// `sandbox_image`), to be imported into [`CRI_NAMESPACE`] before a pod
    /// starts.
    pub sandbox_image: Option<String>,
    /// With `cri`: the CNI network configuration list (JSON), written to
    /// CRI's CNI configuration directory before containerd starts, where
    /// CRI looks for it at start-up.
    pub cni_conflist: Option<String>,
    /// The Strata shim binary to link into containerd's `PATH`; by default
    /// see [`shim_binary`].
    pub shim: Option<PathBuf>,
    /// Fail to start unless the Strata shim binary exists. Set by
    /// [`Containerd::start`] when `runtime` names Strata.
    pub require_shim: bool,
    /// Build and import the busybox image (on by default).
    pub import_image: bool,
    /// Name of the test image.
    pub image_name: String,
    /// How long containerd may take to answer.
    pub start_timeout: Duration,
}

impl ContainerdOptions {
    /// Defaults for a test of `runtime`.
    pub fn new(runtime: &str) -> Self {
        Self {
            runtime: runtime.to_owned(),
            cri: false,
            sandbox_image: None,
            cni_conflist: None,
            shim: None,
            require_shim: is_strata(runtime),
            import_image: true,
            image_name: image::DEFAULT_IMAGE_NAME.to_owned(),
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// True if `runtime` is one of Strata's runtime names.
pub fn is_strata(runtime: &str) -> bool {
    runtime.starts_with("io.containerd.strata")
}

/// Where the Strata shim binary is expected.
///
/// `$STRATA_SHIM` if set; otherwise next to the running executable's
/// profile directory (`target/<profile>/`), which is where
/// `cargo build -p strata-shim` puts it; otherwise
/// `$CARGO_TARGET_DIR/debug` or this crate's `../target/debug`.
pub fn shim_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_SHIM") {
        return PathBuf::from(p);
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(mut dir) = exe.parent() {
            if dir.ends_with("deps") {
                dir = dir.parent().unwrap_or(dir);
            }
            candidates.push(dir.join(SHIM_NAME));
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("debug").join(SHIM_NAME));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/debug")
            .join(SHIM_NAME),
    );
    candidates
        .iter()
        .find(|c| c.exists())
        .cloned()
        .unwrap_or_else(|| candidates.swap_remove(0))
}

/// The socket containerd 1.6 (and the Rust shim library) use for a shim:
/// `/run/containerd/s/<sha256 of "<address>/<namespace>/<id>">`.
pub fn shim_socket_path(address: &Path, namespace: &str, id: &str) -> PathBuf {
    let key = address.join(namespace).join(id);
    let hash = Sha256::digest(key.as_os_str().as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    Path::new(SHIM_SOCKET_DIR).join(hex)
}

/// Warns (on stderr, shown for failing tests) when a source file of the
/// workspace's shim or backends is newer than the shim binary: the tests
/// would run an old build.
fn warn_if_stale(shim: &Path) {
    fn newest(dir: &Path, best: &mut Option<(std::time::SystemTime, PathBuf)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                newest(&p, best);
            } else if p.extension().is_some_and(|x| x == "rs" || x == "toml") {
                if let Ok(m) = meta.modified() {
                    if best.as_ref().is_none_or(|(t, _)| m > *t) {
                        *best = Some((m, p));
                    }
                }
            }
        }
    }
    let Ok(built) = fs::metadata(shim).and_then(|m| m.modified()) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut best = None;
    for d in ["shim", "backends", "config"] {
        newest(&root.join(d), &mut best);
    }
    if let Some((t, p)) = best {
        if t > built {
            eprintln!(
                "warning: {} is newer than {}; rebuild it with `cargo build -p strata-shim`",
                p.display(),
                shim.display()
            );
        }
    }
}

/// Makes the kernel SIGKILL the process when the thread that spawned it
/// exits, so containerd never outlives a test process that died. (So a
/// fixture must not outlive the thread that started it.)
fn die_with_parent() -> std::io::Result<()> {
    // SAFETY: prctl(2) with PR_SET_PDEATHSIG takes a plain signal number.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn toml_str(p: &Path) -> String {
    let s = p.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A running containerd private to one test; see the module docs.
#[derive(Debug)]
pub struct Containerd {
    dir: PathBuf,
    address: PathBuf,
    namespace: String,
    runtime: String,
    bin_dir: PathBuf,
    fifo_dir: PathBuf,
    log: PathBuf,
    pid: AtomicI32,
    child: Mutex<Option<Child>>,
    image: Option<BuiltImage>,
    image_name: String,
    ids: Mutex<BTreeSet<String>>,
    rootfs: OnceLock<PathBuf>,
}

impl Containerd {
    /// Starts a containerd for a test of `runtime` with default options.
    pub fn start(runtime: &str) -> Result<Self> {
        Self::start_with(ContainerdOptions::new(runtime))
    }

    /// Starts a containerd with `opts`.
    pub fn start_with(opts: ContainerdOptions) -> Result<Self> {
        let shim = opts.shim.clone().unwrap_or_else(shim_binary);
        if opts.require_shim && !shim.exists() {
            bail!(
                "the Strata shim binary is missing: {} does not exist; build it first \
                 (`cargo build -p strata-shim`) or point STRATA_SHIM at it",
                shim.display()
            );
        }
        if opts.require_shim {
            warn_if_stale(&shim);
        }
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let namespace = format!("e2e-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("se2e-")
            .tempdir_in("/tmp")
            .context("creating the fixture directory")?
            .keep();
        let bin_dir = dir.join("bin");
        let fifo_dir = dir.join("fifo");
        for d in [&bin_dir, &fifo_dir, &dir.join("root"), &dir.join("state")] {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let address = dir.join("c.sock");
        let log = dir.join("containerd.log");
        let config = dir.join("config.toml");

        // From here on a failure drops `me`, which cleans up.
        let mut me = Self {
            dir: dir.clone(),
            address,
            namespace,
            runtime: opts.runtime.clone(),
            bin_dir,
            fifo_dir,
            log,
            pid: AtomicI32::new(0),
            child: Mutex::new(None),
            image: None,
            image_name: opts.image_name.clone(),
            ids: Mutex::new(BTreeSet::new()),
            rootfs: OnceLock::new(),
        };

        if shim.exists() {
            let mut names = vec![SHIM_NAME.to_owned()];
            names.extend(
                SHIM_CLASSES
                    .iter()
                    .map(|c| format!("containerd-shim-strata-{c}-v2")),
            );
            for name in names {
                let link = me.bin_dir.join(&name);
                symlink(&shim, &link).with_context(|| format!("linking {}", link.display()))?;
            }
        }

        if opts.cri {
            me.write_cri_files(&opts)?;
        }
        fs::write(&config, me.config_toml(&opts))
            .with_context(|| format!("writing {}", config.display()))?;

        me.spawn_daemon()?;
        me.wait_ready(opts.start_timeout)?;

        if opts.import_image {
            let tar = me.dir.join("busybox.tar");
            let built = image::build_busybox_image(
                &tar,
                &ImageOptions {
                    name: opts.image_name.clone(),
                    ..ImageOptions::default()
                },
            )?;
            me.ctr(&["images", "import", &tar.display().to_string()])?
                .ok()
                .context("importing the busybox image")?;
            let listed = me.ctr(&["images", "ls", "-q"])?.ok()?;
            ensure!(
                listed.stdout.lines().any(|l| l.trim() == opts.image_name),
                "image {} missing after import; `ctr images ls -q` printed:\n{}",
                opts.image_name,
                listed.stdout
            );
            me.image = Some(built);
        }
        Ok(me)
    }

    /// Starts the containerd process with the fixture's config (its root,
    /// state and sockets), logging to the fixture's log (appended to), and
    /// records it as the fixture's containerd. Does not wait for it.
    fn spawn_daemon(&self) -> Result<()> {
        let config = self.dir.join("config.toml");
        let path = format!(
            "{}:{}",
            self.bin_dir.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context("opening the containerd log")?;
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(&config)
            .env("PATH", &path)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf);
        // SAFETY: `die_with_parent` runs in the forked child before exec and
        // only calls prctl(2), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(die_with_parent);
        }
        let child = cmd
            .spawn()
            .context("starting containerd (is /usr/bin/containerd installed?)")?;
        self.pid.store(child.id() as i32, Ordering::SeqCst);
        *self.child.lock().unwrap() = Some(child);
        Ok(())
    }

    /// Stops this fixture's containerd the way a service manager does
    /// (SIGTERM by PID) and waits up to `timeout` for it to exit, leaving
    /// its shims, containers, root and state in place for
    /// [`Containerd::restart_daemon`]. Fails (after a SIGKILL) if it did not
    /// exit in time.
    pub fn stop_daemon(&self, timeout: Duration) -> Result<ExitStatus> {
        let mut guard = self.child.lock().unwrap();
        let Some(child) = guard.as_mut() else {
            bail!("containerd is not running");
        };
        // SAFETY: kill(2) on the PID of our own unreaped child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().context("waiting for containerd")? {
                *guard = None;
                return Ok(st);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                *guard = None;
                bail!("containerd did not exit within {timeout:?} of SIGTERM; killed it");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts containerd again after [`Containerd::stop_daemon`], with the
    /// same config, root, state and sockets, and waits until it answers.
    pub fn restart_daemon(&self, timeout: Duration) -> Result<()> {
        ensure!(
            self.child.lock().unwrap().is_none(),
            "containerd is still running; stop it first"
        );
        self.spawn_daemon()?;
        self.wait_ready(timeout)
    }

    /// The Strata configuration that the CRI runtime handler
    /// `strata-<class>` names in its `ConfigPath` option.
    pub fn class_config(&self, class: &str) -> PathBuf {
        self.dir.join("strata").join(format!("{class}.toml"))
    }

    /// CRI's CNI configuration directory.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni/conf")
    }

    /// Writes what the CRI plugin reads: one Strata configuration per class
    /// (see [`Containerd::class_config`]) and the CNI network configuration.
    fn write_cri_files(&self, opts: &ContainerdOptions) -> Result<()> {
        let classes: String = SHIM_CLASSES
            .iter()
            .map(|c| format!("\n[classes.{c}]\nbackend = \"{c}\"\n"))
            .collect();
        for class in SHIM_CLASSES {
            let path = self.class_config(class);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            fs::write(&path, format!("default_class = \"{class}\"\n{classes}"))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(conflist) = &opts.cni_conflist {
            let dir = self.cni_conf_dir();
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join("10-strata-e2e.conflist");
            fs::write(&path, conflist).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    fn config_toml(&self, opts: &ContainerdOptions) -> String {
        let cri = opts.cri;
        let mut disabled = vec![
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.tracing.processor.v1.otlp",
            "io.containerd.internal.v1.tracing",
        ];
        if !cri {
            disabled.push("io.containerd.grpc.v1.cri");
        }
        let disabled: Vec<String> = disabled.iter().map(|p| format!("\"{p}\"")).collect();
        let runtime = |name: &str| {
            format!("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.\"{name}\"]\n  runtime_type = \"io.containerd.strata.v2\"\n")
        };
        let mut runtimes = runtime("strata");
        for class in SHIM_CLASSES {
            let name = format!("strata-{class}");
            runtimes.push_str(&runtime(&name));
            runtimes.push_str(&format!(
                "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.\"{name}\".options]\n  ConfigPath = {}\n",
                toml_str(&self.class_config(class))
            ));
        }
        let sandbox_image = opts
            .sandbox_image
            .as_deref()
            .map(|i| format!("  sandbox_image = \"{i}\"\n"))
            .unwrap_or_default();
        format!(
            r#"version = 2
root = {root}
state = {state}
# Root here lacks CAP_SYS_RESOURCE: never try to lower oom_score_adj.
oom_score = 0
disabled_plugins = [{disabled}]

[grpc]
  address = {grpc}

[ttrpc]
  address = {ttrpc}

[debug]
  level = "debug"

[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  enable_cdi = false
  # Pod network namespaces are mounted below the private state dir.
  netns_mounts_under_state_dir = true
{sandbox_image}
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = {cni_bin}
  conf_dir = {cni_conf}

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{runtimes}"#,
            root = toml_str(&self.dir.join("root")),
            state = toml_str(&self.dir.join("state")),
            disabled = disabled.join(", "),
            grpc = toml_str(&self.address),
            ttrpc = toml_str(&self.dir.join("c.sock.ttrpc")),
            cni_bin = toml_str(Path::new(CNI_BIN_DIR)),
            cni_conf = toml_str(&self.cni_conf_dir()),
            runtimes = runtimes,
            sandbox_image = sandbox_image,
        )
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(st) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "containerd exited early ({st}); log {}:\n{}",
                    self.log.display(),
                    self.log_tail(40)
                );
            }
            if self.address.exists() {
                match self.ctr_timeout(&["version"], Duration::from_secs(5)) {
                    Ok(o) if o.success() => return Ok(()),
                    Ok(o) => last = o.to_string(),
                    Err(e) => last = format!("{e:#}"),
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "containerd did not answer within {timeout:?}: {last}\nlog {}:\n{}",
            self.log.display(),
            self.log_tail(40)
        )
    }

    /// The fixture's private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// containerd's gRPC socket (`ctr -a`).
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// The namespace this fixture's containers live in (`ctr -n`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The runtime this fixture was started for.
    pub fn runtime(&self) -> &str {
        &self.runtime
    }

    /// containerd's PID.
    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// Directory first on containerd's `PATH`, holding the shim links.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Directory `ctr` is told to put I/O fifos in (`--fifo-dir`).
    pub fn fifo_dir(&self) -> &Path {
        &self.fifo_dir
    }

    /// containerd's state dir.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Where containerd keeps this namespace's task bundles.
    pub fn task_dir(&self) -> PathBuf {
        self.state_dir()
            .join("io.containerd.runtime.v2.task")
            .join(&self.namespace)
    }

    /// containerd's debug log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of containerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Name of the imported test image.
    pub fn image(&self) -> &str {
        &self.image_name
    }

    /// What was imported, if anything.
    pub fn built_image(&self) -> Option<&BuiltImage> {
        self.image.as_ref()
    }

    /// Remembers a container ID so cleanup and the leftover check cover it.
    pub fn track(&self, id: &str) {
        self.ids.lock().unwrap().insert(id.to_owned());
    }

    /// Container IDs used through this fixture so far.
    pub fn tracked_ids(&self) -> BTreeSet<String> {
        self.ids.lock().unwrap().clone()
    }

    /// A `ctr` command aimed at this containerd and namespace.
    pub fn ctr_command(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a")
            .arg(&self.address)
            .arg("-n")
            .arg(&self.namespace);
        c
    }

    /// Runs `ctr <args>` with the default timeout.
    pub fn ctr(&self, args: &[&str]) -> Result<CmdOutput> {
        self.ctr_timeout(args, command::DEFAULT_TIMEOUT)
    }

    /// Runs `ctr <args>`, killing it after `timeout`.
    pub fn ctr_timeout(&self, args: &[&str], timeout: Duration) -> Result<CmdOutput> {
        let mut c = self.ctr_command();
        c.args(args);
        command::run(c, None, timeout)
    }

    /// A root filesystem unpacked from the test image's layer, for runs with
    /// a full OCI spec (`ctr run --config`). Unpacked on first use.
    pub fn rootfs(&self) -> Result<PathBuf> {
        if let Some(p) = self.rootfs.get() {
            return Ok(p.clone());
        }
        let dest = self.dir.join("rootfs");
        image::unpack_rootfs(&dest)?;
        Ok(self.rootfs.get_or_init(|| dest).clone())
    }

    /// The long-running shim server of container `id` of this fixture: a
    /// live `containerd-shim-*` process with `-namespace <ns>` and `-id <id>`
    /// on its command line that is not one of the short-lived `start` or
    /// `delete` invocations. (Each container has its own shim here.)
    pub fn shim_server(&self, id: &str) -> Option<procfs::ProcInfo> {
        let mut found: Vec<procfs::ProcInfo> = procfs::processes()
            .into_values()
            .filter(|p| p.is_shim_server(&self.namespace) && p.has_flag("-id", id))
            .collect();
        // Should several match, the oldest is the one containerd talks to.
        found.sort_by_key(|p| p.start);
        found.into_iter().next()
    }

    /// PIDs of every process belonging to this instance: containerd, any
    /// process whose command line names its socket or whose environment
    /// names its directory (shims inherit containerd's `PATH`), and all
    /// their descendants.
    pub fn our_pids(&self) -> BTreeSet<i32> {
        let table = procfs::processes();
        self.our_pids_in(&table)
    }

    pub(crate) fn our_pids_in(
        &self,
        table: &std::collections::BTreeMap<i32, procfs::ProcInfo>,
    ) -> BTreeSet<i32> {
        let me = std::process::id() as i32;
        let addr = self.address.display().to_string();
        let mut dir = self.dir.as_os_str().as_bytes().to_vec();
        dir.push(b'/');
        let mut roots = BTreeSet::new();
        let pid = self.pid();
        if pid > 0 && table.contains_key(&pid) {
            roots.insert(pid);
        }
        for p in table.values() {
            if p.pid == me {
                continue;
            }
            if p.cmdline_mentions(&addr)
                || p.environ_mentions(&dir)
                || p.cmdline.iter().any(|a| a == &self.namespace)
            {
                roots.insert(p.pid);
            }
        }
        let mut all = procfs::with_descendants(table, &roots);
        all.remove(&me);
        all
    }

    fn stop_containerd(&self) {
        let mut guard = self.child.lock().unwrap();
        let Some(child) = guard.as_mut() else {
            return;
        };
        if child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on the PID of our own unreaped child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        *guard = None;
    }

    /// Removes every container through `ctr`, best effort, with short
    /// timeouts.
    fn remove_all_containers(&self, report: &mut Vec<String>) {
        let t = Duration::from_secs(10);
        let Ok(list) = self.ctr_timeout(&["containers", "ls", "-q"], t) else {
            return;
        };
        for id in list.stdout.split_whitespace() {
            report.push(format!("removed container {id}"));
            self.track(id);
            let _ = self.ctr_timeout(&["tasks", "kill", "-a", "-s", "SIGKILL", id], t);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                match self.ctr_timeout(&["tasks", "rm", "-f", id], t) {
                    Ok(o) if o.success() || o.stderr.contains("not found") => break,
                    Ok(_) => thread::sleep(Duration::from_millis(100)),
                    Err(_) => break,
                }
            }
            let _ = self.ctr_timeout(&["containers", "rm", id], t);
        }
    }

    fn kill_our_processes(&self, report: &mut Vec<String>) {
        let table = procfs::processes();
        let pids = self.our_pids_in(&table);
        for pid in &pids {
            if let Some(p) = table.get(pid) {
                if !p.is_zombie() {
                    report.push(format!("killed {}", p.describe()));
                }
            }
            // SAFETY: kill(2) by PID of a process that belongs to this
            // fixture (never this process; see `our_pids_in`).
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && pids.iter().any(|p| procfs::alive(*p)) {
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn remove_runc_state(&self, report: &mut Vec<String>) {
        let root = Path::new(RUNC_STATE_DIR).join(&self.namespace);
        if let Ok(entries) = fs::read_dir(&root) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                report.push(format!("deleted runc state {}", e.path().display()));
                let mut c = Command::new("runc");
                c.arg("--root").arg(&root).args(["delete", "--force", &id]);
                let _ = command::run(c, None, Duration::from_secs(10));
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let _ = fs::remove_dir(&root);
    }

    fn unmount_all(&self, report: &mut Vec<String>) {
        for _ in 0..3 {
            let mut ms: Vec<procfs::MountInfo> = procfs::mounts()
                .into_iter()
                .filter(|m| {
                    m.mount_point.starts_with(&self.dir)
                        || m.mount_point
                            .starts_with(Path::new(DEFAULT_TASK_DIR).join(&self.namespace))
                })
                .collect();
            if ms.is_empty() {
                return;
            }
            // Newest (and so deepest) first.
            ms.sort_by_key(|m| std::cmp::Reverse(m.id));
            for m in ms {
                report.push(format!("unmounted {}", m.mount_point.display()));
                let Ok(c) = CString::new(m.mount_point.as_os_str().as_bytes()) else {
                    continue;
                };
                // SAFETY: umount2(2) with a valid NUL-terminated path.
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }

    /// Cgroup directories for this namespace: `/sys/fs/cgroup/<c>/<ns>` for
    /// every hierarchy `<c>` where it exists.
    pub fn cgroup_ns_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(entries) = fs::read_dir(CGROUP_ROOT) {
            for e in entries.flatten() {
                let p = e.path().join(&self.namespace);
                if p.is_dir() {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// Kills every process still in one of this namespace's cgroups, which
    /// may have escaped the process tree (reparented to PID 1); frozen
    /// cgroups are thawed first, as a frozen process cannot die.
    fn kill_cgroup_processes(&self, report: &mut Vec<String>) {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            out.push(dir.to_path_buf());
            if let Ok(entries) = fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&e.path(), out);
                    }
                }
            }
        }
        let mut dirs = Vec::new();
        for d in self.cgroup_ns_dirs() {
            walk(&d, &mut dirs);
        }
        let me = std::process::id() as i32;
        let mut pids = BTreeSet::new();
        for d in &dirs {
            let v1 = d.join("freezer.state");
            if fs::read_to_string(&v1).is_ok_and(|s| s.trim() != "THAWED") {
                report.push(format!("thawed {}", d.display()));
                let _ = fs::write(&v1, "THAWED");
            }
            let v2 = d.join("cgroup.freeze");
            if fs::read_to_string(&v2).is_ok_and(|s| s.trim() == "1") {
                report.push(format!("thawed {}", d.display()));
                let _ = fs::write(&v2, "0");
            }
            let procs = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            pids.extend(
                procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                    .filter(|&p| p > 1 && p != me),
            );
        }
        for pid in &pids {
            if let Some(p) = procfs::read_proc(*pid).filter(|p| !p.is_zombie()) {
                report.push(format!("killed (in a cgroup) {}", p.describe()));
            }
            // SAFETY: kill(2) by PID of a process in a cgroup of this
            // fixture's namespace (never this process).
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && pids.iter().any(|p| procfs::alive(*p)) {
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn remove_cgroups(&self, report: &mut Vec<String>) {
        fn rm_tree(dir: &Path, report: &mut Vec<String>, top: bool) {
            if let Ok(entries) = fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        rm_tree(&e.path(), report, false);
                    }
                }
            }
            for _ in 0..50 {
                match fs::remove_dir(dir) {
                    Ok(()) => {
                        if !top {
                            report.push(format!("removed cgroup {}", dir.display()));
                        }
                        return;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        thread::sleep(Duration::from_millis(20))
                    }
                    Err(_) => return,
                }
            }
        }
        for d in self.cgroup_ns_dirs() {
            rm_tree(&d, report, true);
        }
    }

    fn remove_sockets(&self, report: &mut Vec<String>) {
        for id in self.tracked_ids() {
            let p = shim_socket_path(&self.address, &self.namespace, &id);
            if p.exists() {
                report.push(format!("removed shim socket {}", p.display()));
                let _ = fs::remove_file(&p);
            }
        }
    }

    fn teardown(&mut self) -> Vec<String> {
        let mut report = Vec::new();
        let running = self
            .child
            .lock()
            .unwrap()
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none());
        if running && self.address.exists() {
            self.remove_all_containers(&mut report);
        }
        self.stop_containerd();
        self.kill_cgroup_processes(&mut report);
        self.kill_our_processes(&mut report);
        self.remove_runc_state(&mut report);
        self.unmount_all(&mut report);
        self.remove_cgroups(&mut report);
        self.remove_sockets(&mut report);
        let _ = fs::remove_dir(Path::new(DEFAULT_TASK_DIR).join(&self.namespace));
        if procfs::mounts_under(&self.dir).is_empty() {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                report.push(format!("could not remove {}: {e}", self.dir.display()));
            }
        } else {
            report.push(format!(
                "left {} in place: mounts below it could not be removed",
                self.dir.display()
            ));
        }
        report
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        if panicking {
            eprintln!(
                "==== containerd log ({}), last 200 lines ====\n{}\n==== end of containerd log ====",
                self.log.display(),
                self.log_tail(200)
            );
        }
        let report = self.teardown();
        if !report.is_empty() {
            eprintln!(
                "fixture {} cleanup:\n  {}",
                self.namespace,
                report.join("\n  ")
            );
        }
    }
}
