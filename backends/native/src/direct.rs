//! The native backend for a runtime that runs one command per process, as
//! the runc-compatible command line does: no async runtime, no stream
//! copying (a container's standard streams are the caller's own, or a
//! terminal whose master goes back to the caller), and every step a
//! separate call that finds the container again from its id, spec and
//! state directory.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{ContainerState, LinuxResources, Process, Spec};
use strata_backend::{Error, Result};
use strata_cgroups::{Cgroup, Hierarchy};
use strata_hooks::HookKind;

use crate::container::{init_namespaces, start_and_wait, teardown};
use crate::host::{DirectHost, Host};
use crate::prepare::{abandon, cgroup_for, prepare, Prepared, START_FIFO};
use crate::protocol::{ExecRequest, Request};
use crate::spawn::{run_helper, Support};
use crate::stdio::ChildStdio;

/// A process the runtime just made.
#[derive(Debug)]
pub struct Made {
    /// Its host pid.
    pub pid: i32,
    /// The master side of its terminal, when the spec asked for one.
    pub terminal: Option<OwnedFd>,
}

/// Native containers for a one-command-per-process runtime.
pub struct DirectRuntime {
    hierarchy: Hierarchy,
    helper: PathBuf,
}

impl DirectRuntime {
    /// A runtime for this host; `helper` is the binary that runs the init
    /// helper when given [`crate::INIT_ARG`].
    pub fn new(helper: PathBuf) -> Result<DirectRuntime> {
        let hierarchy =
            Hierarchy::detect().map_err(|e| Error::Process(format!("detecting cgroups: {e}")))?;
        Ok(DirectRuntime { hierarchy, helper })
    }

    /// Creates the container; its init waits in `state_dir` for [`start`](Self::start).
    /// The init's standard streams are the caller's; descriptors 3 to
    /// 3 + `preserve_fds` - 1 are passed on too.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        spec: &Spec,
        state_dir: &Path,
        preserve_fds: u32,
    ) -> Result<Made> {
        let Prepared {
            cgroup,
            start_fifo,
            request,
            init_support,
            ..
        } = prepare(
            &self.hierarchy,
            id,
            bundle,
            spec,
            state_dir,
            preserve_fds,
            None,
        )?;
        let made = self.run(&request, &cgroup, &init_support);
        if made.is_err() {
            abandon(&cgroup, &start_fifo);
        }
        made
    }

    /// Lets the container's init run the user's program, then runs the
    /// `poststart` hooks.
    pub fn start(
        &self,
        id: &str,
        bundle: &Path,
        spec: &Spec,
        state_dir: &Path,
        pid: i32,
    ) -> Result<()> {
        start_and_wait(&state_dir.join(START_FIFO), pid, spec)?;
        self.run_hooks(
            HookKind::Poststart,
            id,
            bundle,
            spec,
            pid,
            ContainerState::Running,
        )
    }

    /// Starts `process` inside the running container whose init is `init_pid`.
    pub fn exec(
        &self,
        id: &str,
        bundle: &Path,
        spec: &Spec,
        init_pid: i32,
        process: Process,
        preserve_fds: u32,
    ) -> Result<Made> {
        crate::validate::check_process(&process)?;
        let cgroup = self.cgroup(id, spec)?;
        let support = Support::new(id, bundle, spec, preserve_fds, None);
        let request = Request::Exec(Box::new(ExecRequest {
            process,
            namespaces: init_namespaces(spec, init_pid as u32),
            seccomp: support.seccomp.clone(),
            interposer: support.interposer_filter(),
        }));
        self.run(&request, &cgroup, &support)
    }

    /// The container's cgroup (which may not exist any more).
    pub fn cgroup(&self, id: &str, spec: &Spec) -> Result<Cgroup> {
        cgroup_for(&self.hierarchy, id, spec)
    }

    /// Applies new resource limits to a running container, after the same
    /// checks as the shim's Update: a bad value is refused by its field.
    pub fn update(&self, id: &str, spec: &Spec, resources: &LinuxResources) -> Result<()> {
        crate::validate::check_resources(resources)?;
        self.cgroup(id, spec)?
            .apply(resources)
            .map_err(|e| Error::Process(format!("updating the resources of {id}: {e}")))
    }

    /// Kills what is left of the container, removes its cgroup and start
    /// FIFO, and runs the `poststop` hooks.
    pub fn destroy(
        &self,
        id: &str,
        bundle: &Path,
        spec: &Spec,
        state_dir: &Path,
        pid: i32,
    ) -> Result<()> {
        let cgroup = self.cgroup(id, spec)?;
        teardown(&cgroup, &state_dir.join(START_FIFO))?;
        self.run_hooks(
            HookKind::Poststop,
            id,
            bundle,
            spec,
            pid,
            ContainerState::Stopped,
        )
    }

    fn run(&self, request: &Request, cgroup: &Cgroup, support: &Support) -> Result<Made> {
        let spawned = run_helper(
            &self.helper,
            request,
            ChildStdio::inherit(),
            cgroup,
            support,
            &DirectHost,
        );
        match (spawned.result, spawned.pid) {
            (Ok(()), Some(pid)) => Ok(Made {
                pid,
                terminal: spawned.terminal,
            }),
            (result, pid) => {
                if let Some(pid) = pid {
                    // The process is this runtime's child: kill and reap it.
                    let pid = nix::unistd::Pid::from_raw(pid);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(pid, None);
                }
                Err(result
                    .err()
                    .unwrap_or_else(|| Error::Process("the init helper reported no pid".into())))
            }
        }
    }

    fn run_hooks(
        &self,
        kind: HookKind,
        id: &str,
        bundle: &Path,
        spec: &Spec,
        pid: i32,
        status: ContainerState,
    ) -> Result<()> {
        let Some(hooks) = spec.hooks() else {
            return Ok(());
        };
        let support = Support::new(id, bundle, spec, 0, None);
        DirectHost.run_hooks(kind, hooks, &support.state(pid, status))
    }
}
