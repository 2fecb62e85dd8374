//! The wire protocol between the host (`strata-microvm`) and the guest agent.
//!
//! The protocol is ttrpc with protobuf messages, as in the rest of the
//! containerd stack: the service `strata.agent.v1.Agent` of
//! `proto/agent.proto`, whose messages are [`agent`]. The transport is the
//! one byte stream both hypervisors provide (a virtio-serial port under
//! QEMU, the console `/dev/hvc0` under the built-in VMM): already connected,
//! with no `accept` and no second connection. Both directions carry ttrpc's
//! messages on it:
//!
//! ```text
//! u32 big-endian payload length | u32 big-endian stream id | u8 type | u8 flags | payload
//! type 1: a request, payload ttrpc.Request{service, method, payload, ...}
//! type 2: a response, payload ttrpc.Response{status, payload}
//! ```
//!
//! The host is the client: it numbers its calls with odd stream ids and
//! keeps many in flight at once; the agent ([`rpc`](crate::rpc)) answers
//! each on a thread of its own, so a call that waits does not hold up the
//! others. A refused call is a response with a non-OK status whose message
//! says why.
//!
//! Nothing is pushed: the host reads a process's output with `ReadStdout`
//! and `ReadStderr`, which return the next chunk once there is one, and
//! learns its exit with `WaitProcess`, which returns only after the output
//! was read to its end, so the exit comes after the output.
//!
//! One VM may host several containers (the containers of a pod): calls name
//! their container, and a process by its container and exec id.

/// The generated messages, wrapped so that their file's inner attributes apply.
mod generated {
    include!(concat!(env!("OUT_DIR"), "/mod.rs"));
}

pub use generated::agent;

/// The name of the virtio-serial port the agent listens on.
pub const PORT_NAME: &str = "strata.agent";

/// The ttrpc service the agent serves.
pub const SERVICE: &str = "strata.agent.v1.Agent";

/// The exec id of a container's init process in messages; exec ids from
/// containerd are never empty.
pub const INIT: &str = "";

/// The name of the disk that the VM boots with, holding the root
/// filesystem of its first container; other disks are named by their slot.
pub const ROOT_DISK: &str = "root";

/// The largest message either side accepts (ttrpc's own limit), so a
/// corrupt length cannot make the reader allocate without bound.
pub const MAX_MESSAGE: usize = ttrpc::proto::MESSAGE_LENGTH_MAX;

/// The largest stdio chunk in one call.
pub const MAX_CHUNK: usize = 32 << 10;

/// The key naming process `exec` of `container`. Container ids never
/// contain a slash (containerd allows letters, digits, `.`, `_` and `-`).
pub fn process_key(container: &str, exec: &str) -> String {
    format!("{container}/{exec}")
}

/// The calls the host makes, as its backend code names them.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `CreateContainer`.
    Create {
        /// The container's id.
        container: String,
        /// The serial of the disk holding its root filesystem.
        disk: String,
        /// The container's spec, its mounts and hooks left out: its
        /// process, hostname, `root.readonly`, resources, masked and
        /// read-only paths, sysctls and seccomp profile apply in the guest.
        spec: Box<oci_spec::runtime::Spec>,
        /// Kernel filesystems to mount inside the root filesystem.
        mounts: Vec<agent::Mount>,
        /// Whether the host connected a standard input.
        stdin: bool,
    },
    /// `StartContainer`.
    Start {
        /// The container.
        container: String,
    },
    /// `ExecProcess`.
    Exec {
        /// The container.
        container: String,
        /// The exec id, which names the process in later calls.
        exec_id: String,
        /// The process, as in the OCI spec.
        process: Box<oci_spec::runtime::Process>,
        /// Whether the host connected a standard input.
        stdin: bool,
    },
    /// `SignalProcess`.
    Kill {
        /// The container.
        container: String,
        /// The exec id ([`INIT`] for the init process).
        process: String,
        /// The signal number.
        signal: u32,
        /// Every process of the container instead of `process` alone.
        all: bool,
    },
    /// `CloseStdin`.
    CloseStdin {
        /// The container.
        container: String,
        /// The exec id.
        process: String,
    },
    /// `ResizePty`.
    ResizePty {
        /// The container.
        container: String,
        /// The exec id.
        process: String,
        /// Columns.
        width: u32,
        /// Rows.
        height: u32,
    },
    /// `StatsContainer`.
    Stats {
        /// The container.
        container: String,
    },
    /// `RemoveContainer`.
    Remove {
        /// The container.
        container: String,
    },
    /// `Shutdown`.
    Shutdown,
}

/// A successful answer to a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done, nothing to report.
    Done,
    /// A process was started; its pid in the guest.
    Started {
        /// The guest pid.
        pid: u32,
    },
    /// The usage of the container's cgroup in the guest.
    Stats(Box<strata_cgroups::Stats>),
}
