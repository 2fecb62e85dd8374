//! The interpose backend: native containers whose every process is
//! supervised by a syscall interposer, one supervisor process per listener.
//!
//! A supervisor runs as a separate process (this binary, re-executed with
//! [`SUPERVISE_ARG`]) rather than as threads of the shim: a fault in the
//! code that parses hostile syscall arguments then ends one supervisor, not
//! the shim and every container it serves, and the shim sees that exit and
//! stops the container instead of leaving it unsupervised. The supervisor
//! ends by itself when the processes it supervises are gone.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use async_trait::async_trait;
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, Spec};
use serde::{Deserialize, Serialize};
use strata_backend::{reaper, Backend, Container, CreateRequest, Error, Exit, Result};
use strata_cgroups::Cgroup;
use strata_config::{InterposeOptions, NetDefault};
use strata_interpose::{NetAction, NetRule, NetworkPolicy, Policy, Supervisor, SystemView};
use strata_native::{Interposer, NativeBackend, Target};
use tokio::runtime::Handle;

/// The argument that makes this binary a supervisor.
pub const SUPERVISE_ARG: &str = "supervise";

/// The descriptor at which a supervisor finds its listener.
const LISTENER_FD: i32 = 3;

/// What a supervisor is told on its standard input.
#[derive(Debug, Serialize, Deserialize)]
struct Assignment {
    container_id: String,
    policy: Policy,
    view: SystemView,
}

/// Builds the interposer's policy from a class's options; a bad network
/// rule is named by its key in the class table.
pub fn policy(class: &str, options: &InterposeOptions) -> std::result::Result<Policy, String> {
    let rules = |list: &[String], key: &str| {
        list.iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse::<NetRule>().map_err(|e| {
                    format!("classes.{class}.interpose.network.{key}[{i}] = {text:?}: {e}")
                })
            })
            .collect::<std::result::Result<Vec<_>, String>>()
    };
    Ok(Policy {
        hidden: options.hidden.clone(),
        read_only: options.read_only.clone(),
        network: NetworkPolicy {
            default: match options.network.default {
                NetDefault::Allow => NetAction::Allow,
                NetDefault::Deny => NetAction::Deny,
            },
            allow: rules(&options.network.allow, "allow")?,
            deny: rules(&options.network.deny, "deny")?,
        },
        kernel_release: options.kernel_release.clone(),
        allow_syscalls: options.allow_syscalls.clone(),
    })
}

/// Native containers under a class's interposer policy.
pub struct InterposeBackend {
    native: Arc<NativeBackend>,
    policy: Policy,
    helper: PathBuf,
}

impl InterposeBackend {
    /// A backend that runs `native` containers under `policy`; `helper` is
    /// the binary that becomes each supervisor.
    pub fn new(native: Arc<NativeBackend>, policy: Policy, helper: PathBuf) -> Self {
        InterposeBackend {
            native,
            policy,
            helper,
        }
    }
}

#[async_trait]
impl Backend for InterposeBackend {
    async fn create(&self, mut request: CreateRequest) -> Result<Box<dyn Container>> {
        refuse_own_listener(&request.spec)?;
        let filter = strata_interpose::filter(&self.policy).map_err(|e| Error::InvalidSpec {
            field: "interpose policy".into(),
            reason: e.to_string(),
        })?;
        add_backstop(&mut request.spec, &self.policy);
        let interposer = Arc::new(Launcher {
            filter,
            policy: self.policy.clone(),
            helper: self.helper.clone(),
            runtime: Handle::current(),
        });
        self.native.create_with(request, Some(interposer)).await
    }

    async fn cleanup(
        &self,
        id: &str,
        bundle: &std::path::Path,
        state_dir: &std::path::Path,
    ) -> Result<()> {
        // Supervisors end when the processes they supervise are gone.
        self.native.cleanup(id, bundle, state_dir).await
    }
}

/// A process takes one notifying filter only: a spec whose own profile
/// notifies an agent cannot also have the interposer.
fn refuse_own_listener(spec: &Spec) -> Result<()> {
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let notifies = seccomp.is_some_and(|s: &LinuxSeccomp| {
        s.default_action() == LinuxSeccompAction::ScmpActNotify
            || s.syscalls()
                .iter()
                .flatten()
                .any(|rule| rule.action() == LinuxSeccompAction::ScmpActNotify)
    });
    if notifies {
        return Err(Error::InvalidSpec {
            field: "linux.seccomp".into(),
            reason: "SCMP_ACT_NOTIFY rules cannot be combined with an interpose class, whose \
                     interposer takes the process's one notification listener"
                .into(),
        });
    }
    Ok(())
}

/// Makes the kernel enforce the policy's paths too: hidden paths are masked
/// and read-only paths remounted read-only, as `maskedPaths` and
/// `readonlyPaths` do. A call the interposer lets the kernel run (and whose
/// path another thread may have changed since the interposer looked) then
/// still cannot reach a hidden file or write a read-only one.
fn add_backstop(spec: &mut Spec, policy: &Policy) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    let add = |list: &Option<Vec<String>>, paths: &[PathBuf]| {
        let mut list = list.clone().unwrap_or_default();
        for path in paths {
            let path = path.display().to_string();
            if !list.contains(&path) {
                list.push(path);
            }
        }
        Some(list)
    };
    let masked = add(linux.masked_paths(), &policy.hidden);
    let read_only = add(linux.readonly_paths(), &policy.read_only);
    linux.set_masked_paths(masked).set_readonly_paths(read_only);
    spec.set_linux(Some(linux));
}

/// Starts a supervisor process for each listener.
#[derive(Debug)]
struct Launcher {
    filter: LinuxSeccomp,
    policy: Policy,
    helper: PathBuf,
    runtime: Handle,
}

impl Interposer for Launcher {
    fn filter(&self) -> &LinuxSeccomp {
        &self.filter
    }

    fn supervise(&self, target: Target<'_>, listener: OwnedFd) -> Result<()> {
        let assignment = Assignment {
            container_id: target.id.to_owned(),
            policy: self.policy.clone(),
            view: system_view(target.spec, target.cgroup),
        };
        let input = serde_json::to_vec(&assignment)
            .map_err(|e| Error::Process(format!("encoding the supervisor's assignment: {e}")))?;
        let mut child = spawn_supervisor(&self.helper, listener)?;
        let pid = child.id() as i32;
        // Claimed before anything can fail, so the reaper hands the exit here.
        let exit = reaper::watch(pid);
        if let Some(stderr) = child.stderr.take() {
            forward_log(target.id.to_owned(), pid, stderr);
        }
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(&input))
            .unwrap_or(Ok(()));
        if let Err(e) = written {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(Error::io("handing the supervisor its assignment", e));
        }
        let id = target.id.to_owned();
        let cgroup = target.cgroup.clone();
        self.runtime.spawn(async move {
            let status = exit.await.unwrap_or(libc::SIGKILL);
            let code = Exit::code_from_wait_status(status);
            if code == 0 {
                return;
            }
            log::error!(
                "the interposer of container {id} (supervisor pid {pid}) ended with status {code}; \
                 stopping the container, which must not run unsupervised"
            );
            if let Err(e) = tokio::task::spawn_blocking(move || cgroup.kill_all()).await {
                log::error!("stopping container {id}: {e}");
            }
        });
        Ok(())
    }
}

/// What the container's processes are shown of the machine: its own
/// memory limit, cpu quota and cpuset, and its age, counted from when its
/// cgroup was made.
fn system_view(spec: &Spec, cgroup: &Cgroup) -> SystemView {
    let started = cgroup
        .paths()
        .first()
        .and_then(|dir| std::fs::metadata(dir).ok())
        .and_then(|meta| meta.modified().ok())
        .unwrap_or_else(std::time::SystemTime::now);
    let mut view = SystemView::new(started);
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let memory = resources
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit());
    if let Some(limit) = memory.filter(|&limit| limit > 0) {
        view = view.with_memory_limit(limit as u64);
    }
    let cpu = resources.and_then(|r| r.cpu().as_ref());
    let quota = cpu.and_then(|c| c.quota()).filter(|&q| q > 0);
    if let Some(quota) = quota {
        let period = cpu.and_then(|c| c.period()).filter(|&p| p > 0);
        // The kernel's default CFS period.
        view = view.with_cpu_quota(quota as u64, period.unwrap_or(100_000));
    }
    if let Some(cpus) = cpu.and_then(|c| c.cpus().clone()) {
        view = view.with_cpuset(cpus);
    }
    if let Some(dir) = cgroup.path_for("memory") {
        view = view.with_memory_cgroup(dir);
    }
    view
}

/// Starts this binary as a supervisor with `listener` at [`LISTENER_FD`].
fn spawn_supervisor(helper: &std::path::Path, listener: OwnedFd) -> Result<std::process::Child> {
    let mut command = Command::new(helper);
    command
        .arg(SUPERVISE_ARG)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    strata_backend::child::pass_fd(&mut command, &listener, LISTENER_FD);
    let child = command
        .spawn()
        .map_err(|e| Error::path("starting the supervisor", helper, e))?;
    drop(listener);
    Ok(child)
}

/// Copies a supervisor's log lines (`LEVEL message`) into the shim's log.
fn forward_log(id: String, pid: i32, stderr: impl Read + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let (level, message) = match line.split_once(' ') {
                Some((level, message)) => (level.parse().unwrap_or(log::Level::Warn), message),
                None => (log::Level::Warn, line.as_str()),
            };
            log::log!(level, "interposer of {id} [{pid}]: {message}");
        }
    });
}

/// The supervisor process: reads its assignment, supervises the listener at
/// [`LISTENER_FD`] until its processes are gone, and logs the summary.
pub fn supervise_main() -> ! {
    log::set_logger(&STDERR_LOGGER).ok();
    log::set_max_level(log::LevelFilter::Info);
    let code = match run_supervisor() {
        Ok(()) => 0,
        Err(message) => {
            log::error!("{message}");
            1
        }
    };
    std::process::exit(code)
}

fn run_supervisor() -> std::result::Result<(), String> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| format!("reading the assignment: {e}"))?;
    let assignment: Assignment =
        serde_json::from_slice(&input).map_err(|e| format!("decoding the assignment: {e}"))?;
    // SAFETY: the shim placed the listener at this descriptor before exec;
    // nothing else in this process owns it.
    let listener = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(LISTENER_FD) };
    let id = assignment.container_id.clone();
    let supervisor = Supervisor::new(
        listener,
        assignment.container_id,
        assignment.policy,
        assignment.view,
    )
    .map_err(|e| format!("starting to supervise {id}: {e}"))?;
    let stats = supervisor
        .run()
        .map_err(|e| format!("supervising {id}: {e}"))?;
    log::info!("mediated calls of {id}: {stats}");
    Ok(())
}

/// Writes log records to standard error as `LEVEL message`, one per line,
/// which [`forward_log`] reads back in the shim.
struct StderrLogger;

static STDERR_LOGGER: StderrLogger = StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}\n", record.level(), record.args()).replace('\n', " ");
        let _ = std::io::stderr().write_all(format!("{}\n", line.trim_end()).as_bytes());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder, SpecBuilder};

    fn options() -> InterposeOptions {
        let mut options = InterposeOptions::default();
        options.hidden = vec!["/etc/shadow".into()];
        options.read_only = vec!["/usr".into()];
        options.network.default = NetDefault::Deny;
        options.network.allow = vec!["127.0.0.1/32:8080".into()];
        options
    }

    #[test]
    fn the_policy_carries_the_class_options() {
        let policy = policy("box", &options()).unwrap();
        assert_eq!(policy.hidden, [PathBuf::from("/etc/shadow")]);
        assert_eq!(policy.read_only, [PathBuf::from("/usr")]);
        assert_eq!(policy.network.default, NetAction::Deny);
        assert_eq!(policy.network.allow.len(), 1);
        assert!(policy.network.deny.is_empty());
    }

    #[test]
    fn a_bad_rule_is_named_by_its_key() {
        let mut options = options();
        options.network.deny = vec!["10.0.0.0/8".into(), "nonsense".into()];
        let err = policy("box", &options).unwrap_err();
        assert!(
            err.contains("classes.box.interpose.network.deny[1] = \"nonsense\""),
            "{err}"
        );
    }

    #[test]
    fn the_kernel_masks_and_protects_the_policy_paths_too() {
        let mut spec = Spec::default();
        let masked_before = spec
            .linux()
            .as_ref()
            .and_then(|l| l.masked_paths().clone())
            .unwrap_or_default();
        let policy = policy("box", &options()).unwrap();
        add_backstop(&mut spec, &policy);
        add_backstop(&mut spec, &policy);
        let linux = spec.linux().as_ref().unwrap();
        let masked = linux.masked_paths().clone().unwrap();
        assert_eq!(masked.len(), masked_before.len() + 1);
        assert!(masked.contains(&"/etc/shadow".to_owned()));
        let read_only = linux.readonly_paths().clone().unwrap();
        assert_eq!(read_only.iter().filter(|p| *p == "/usr").count(), 1);
    }

    #[test]
    fn a_profile_that_notifies_is_refused() {
        let rule = LinuxSyscallBuilder::default()
            .names(vec!["openat".to_owned()])
            .action(LinuxSeccompAction::ScmpActNotify)
            .build()
            .unwrap();
        let seccomp = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![rule])
            .build()
            .unwrap();
        let linux = LinuxBuilder::default().seccomp(seccomp).build().unwrap();
        let spec = SpecBuilder::default().linux(linux).build().unwrap();
        let err = refuse_own_listener(&spec).unwrap_err().to_string();
        assert!(err.contains("linux.seccomp"), "{err}");
        assert!(refuse_own_listener(&Spec::default()).is_ok());
    }
}
