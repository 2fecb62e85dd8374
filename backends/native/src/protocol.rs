//! What the runtime side and the init helper say to each other.
//!
//! The runtime sends one [`Request`]; the helper answers with the host pid of
//! the process it forked ([`Report::Pid`]) and, from that process, either
//! [`Report::Ready`] or [`Report::Error`]. Both sides then close the channel.
//! On the way the helper may ask for help ([`Report::UserNamespace`]), which
//! the runtime answers with [`Request::Continue`], hand over the
//! terminal's master side ([`Report::Terminal`]), or name the interposer's
//! listener ([`Report::InterposerListener`]).

use std::path::{Path, PathBuf};

use std::collections::HashMap;

use oci_spec::runtime::{ContainerState, LinuxNamespaceType, LinuxSeccomp, Process, Spec, State};
use serde::{Deserialize, Serialize};

/// The environment variable naming the descriptor at which the helper finds
/// its channel: 3, or just above the descriptors the process inherits.
pub(crate) const CHANNEL_FD_ENV: &str = "_STRATA_INIT_CHANNEL";

/// A job for the init helper.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Build the container and leave its init process waiting for start.
    Init(Box<InitRequest>),
    /// Run a new process inside an existing container.
    Exec(Box<ExecRequest>),
    /// The runtime did what a report asked for; the helper may go on.
    Continue,
}

/// Everything needed to build a container's init process.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitRequest {
    /// The container id, for the state hooks see.
    pub id: String,
    /// The container's OCI spec.
    pub spec: Spec,
    /// The bundle directory; relative bind-mount sources are taken from it.
    pub bundle: PathBuf,
    /// The absolute host path of the container's root filesystem.
    pub rootfs: PathBuf,
    /// The FIFO the init process waits on until the container is started.
    pub start_fifo: PathBuf,
    /// Host cgroup directories to show under a `cgroup` mount, by controller name.
    pub cgroup_dirs: Vec<(String, PathBuf)>,
    /// The interposer's filter, loaded last before exec, if the container has one.
    pub interposer: Option<LinuxSeccomp>,
}

/// Everything needed to run a process inside a running container.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ExecRequest {
    /// The process to run.
    pub process: Process,
    /// The namespaces to join, as `/proc/<init>/ns/*` paths.
    pub namespaces: Vec<(LinuxNamespaceType, PathBuf)>,
    /// The container's seccomp profile, which exec'd processes get too.
    pub seccomp: Option<LinuxSeccomp>,
    /// The interposer's filter, loaded last before exec, if the container has one.
    pub interposer: Option<LinuxSeccomp>,
}

/// What the helper reports back.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The host pid of the process that becomes the container's process.
    Pid(i32),
    /// The helper created a user namespace and waits for its uid and gid
    /// maps to be written (by the runtime, which holds the privileges).
    UserNamespace,
    /// The process's terminal; the master side is attached to this message.
    Terminal,
    /// The seccomp notification listener, attached, for the runtime to hand
    /// to the agent at `linux.seccomp.listenerPath`.
    SeccompListener,
    /// The interposer's filter is loaded; its listener is this descriptor
    /// number in the process, for the runtime to take (`pidfd_getfd`) and
    /// hand to the interposer.
    InterposerListener(i32),
    /// The container's namespaces exist and its mounts are done: the runtime
    /// runs the `prestart` and `createRuntime` hooks while the helper waits.
    CreateRuntimeHooks,
    /// Setup succeeded.
    Ready,
    /// Setup failed, with a message for the user.
    Error(String),
}

/// The container state that hooks (on either side of the channel) and
/// seccomp agents get.
pub(crate) fn container_state(
    id: &str,
    bundle: &Path,
    annotations: &Option<HashMap<String, String>>,
    pid: i32,
    status: ContainerState,
) -> State {
    let mut state = State::default();
    state
        .set_id(id.to_owned())
        .set_status(status)
        .set_pid(Some(pid))
        .set_bundle(bundle.to_owned())
        .set_annotations(annotations.clone());
    state
}
