//! Pods through containerd's CRI plugin, driven as the kubelet drives them.
//!
//! [`CriNode::start`] gives a private containerd ([`Containerd`]) with its CRI
//! plugin on, a CNI bridge network of its own ([`CniNetwork`]: a unique
//! bridge and subnet, host-local IPAM state in a private directory, no IP
//! masquerading and no port mapping, so no iptables rules), a `pause` sandbox
//! image and the busybox image imported into the `k8s.io` namespace, and a
//! CRI v1 client ([`CriClient`]) on containerd's gRPC socket. Pods get the
//! cgroup parent `/<fixture namespace>`, which the harness's cgroup checks
//! and cleanup already cover.
//!
//! [`CriNode::leftovers`] lists what a test left behind: pods and containers
//! CRI or containerd still knows, the harness's checks (processes, mounts,
//! cgroups), shim sockets and runc state of the pods' ids, network
//! namespaces, veth devices on the bridge and CNI state. Dropping the node
//! removes pods through CRI, then tears containerd down, then deletes the
//! bridge and the CNI state.

mod client;
mod cni;
mod pause;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
/// The CRI v1 messages (`runtime.v1`), which containerd 1.6 serves.
pub use k8s_cri::v1 as api;

pub use client::CriClient;
pub use cni::CniNetwork;
pub use pause::build_pause_image;

use crate::command::{self, CmdOutput};
use crate::containerd::{
    shim_socket_path, Containerd, ContainerdOptions, CRI_NAMESPACE, RUNC_STATE_DIR,
};
use crate::image::{self, ImageOptions};
use crate::leftovers::{HostSnapshot, SETTLE_TIMEOUT};
use crate::procfs;

/// The CRI runtime handler of containerd's runc shim: the reference.
pub const RUNC_HANDLER: &str = "runc";

/// The sandbox image the node builds and configures as `sandbox_image`.
pub const PAUSE_IMAGE: &str = "localhost/strata-e2e/pause:latest";

/// The image app containers run.
pub const BUSYBOX_IMAGE: &str = image::DEFAULT_IMAGE_NAME;

/// Where network namespaces are pinned unless containerd is told otherwise.
const HOST_NETNS_DIR: &str = "/run/netns";

static NEXT_NODE: AtomicU32 = AtomicU32::new(0);

/// What a node's leftover check compares against.
#[derive(Debug)]
struct NodeSnapshot {
    host: HostSnapshot,
    host_netns: BTreeSet<PathBuf>,
}

/// A containerd with CRI and a CNI network, for pod tests; see the module
/// docs. Fields drop in declaration order: the client, containerd (which
/// kills what is left of it), the ids' sockets and runc state, the network.
pub struct CriNode {
    client: CriClient,
    containerd: Containerd,
    ids: TrackedIds,
    network: CniNetwork,
    before: NodeSnapshot,
}

/// The pod and container ids a node used; dropping it removes their shim
/// sockets and runc state, which outlive a containerd that was killed.
struct TrackedIds {
    address: PathBuf,
    ids: Mutex<BTreeSet<String>>,
}

impl TrackedIds {
    fn socket(&self, id: &str) -> PathBuf {
        shim_socket_path(&self.address, CRI_NAMESPACE, id)
    }

    fn runc_state(id: &str) -> PathBuf {
        Path::new(RUNC_STATE_DIR).join(CRI_NAMESPACE).join(id)
    }
}

impl Drop for TrackedIds {
    fn drop(&mut self) {
        for id in self.ids.lock().unwrap().iter() {
            let _ = fs::remove_file(self.socket(id));
            let _ = fs::remove_dir_all(Self::runc_state(id));
        }
    }
}

impl CriNode {
    /// Starts the node and imports its images; see the module docs.
    pub fn start() -> Result<Self> {
        let n = NEXT_NODE.fetch_add(1, Ordering::Relaxed) & 0xff;
        let unique = (std::process::id() << 8) | n;
        let network = CniNetwork::new(unique)?;
        let mut opts = ContainerdOptions::new(crate::STRATA);
        opts.cri = true;
        opts.import_image = false;
        opts.sandbox_image = Some(PAUSE_IMAGE.to_owned());
        opts.cni_conflist = Some(network.conflist());
        let containerd = Containerd::start_with(opts)?;
        let pause = containerd.dir().join("pause.tar");
        build_pause_image(&pause)?;
        let busybox = containerd.dir().join("busybox.tar");
        image::build_busybox_image(&busybox, &ImageOptions::default())?;
        for tar in [&pause, &busybox] {
            ctr_k8s(
                &containerd,
                &["images", "import", &tar.display().to_string()],
            )?
            .ok()
            .with_context(|| format!("importing {}", tar.display()))?;
        }
        let client = CriClient::connect(containerd.address())?;
        // CRI learns of imported images from containerd's events.
        let deadline = Instant::now() + Duration::from_secs(10);
        for name in [PAUSE_IMAGE, BUSYBOX_IMAGE] {
            while !client.has_image(name)? {
                ensure!(
                    Instant::now() < deadline,
                    "CRI does not list the imported image {name}"
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
        let before = NodeSnapshot {
            host: containerd.snapshot(),
            host_netns: entries(Path::new(HOST_NETNS_DIR)),
        };
        Ok(Self {
            client,
            ids: TrackedIds {
                address: containerd.address().to_path_buf(),
                ids: Mutex::new(BTreeSet::new()),
            },
            containerd,
            network,
            before,
        })
    }

    /// The CRI client.
    pub fn cri(&self) -> &CriClient {
        &self.client
    }

    /// The containerd underneath.
    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    /// The pod network.
    pub fn network(&self) -> &CniNetwork {
        &self.network
    }

    /// Remembers a pod or container id for the leftover checks.
    pub fn track(&self, id: &str) {
        self.ids.ids.lock().unwrap().insert(id.to_owned());
    }

    /// The configuration of a pod named `name`: cgroup parent
    /// `/<fixture namespace>`, logs below the fixture directory, the pod
    /// network unless `host_network`.
    pub fn pod_config(&self, name: &str, host_network: bool) -> api::PodSandboxConfig {
        let network = if host_network {
            api::NamespaceMode::Node
        } else {
            api::NamespaceMode::Pod
        };
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: name.to_owned(),
                uid: format!("{name}-{}", self.containerd.namespace()),
                namespace: "default".to_owned(),
                attempt: 0,
            }),
            hostname: if host_network {
                String::new()
            } else {
                name.to_owned()
            },
            log_directory: self.log_dir(name).display().to_string(),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}", self.containerd.namespace()),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(api::NamespaceOption {
                        network: network as i32,
                        pid: api::NamespaceMode::Container as i32,
                        ipc: api::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Where the containers of pod `name` log.
    pub fn log_dir(&self, pod: &str) -> PathBuf {
        self.containerd.dir().join("pod-logs").join(pod)
    }

    /// A busybox container named `name` running `command`, logging to
    /// `<name>.log` in its pod's log directory.
    pub fn container_config(&self, name: &str, command: &[&str]) -> api::ContainerConfig {
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: name.to_owned(),
                attempt: 0,
            }),
            image: Some(api::ImageSpec {
                image: BUSYBOX_IMAGE.to_owned(),
                ..Default::default()
            }),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(api::LinuxContainerConfig::default()),
            ..Default::default()
        }
    }

    /// Runs a pod on `handler` and tracks it.
    pub fn run_pod(&self, config: &api::PodSandboxConfig, handler: &str) -> Result<String> {
        let id = self.client.run_pod(config, handler)?;
        self.track(&id);
        Ok(id)
    }

    /// Creates and starts a container in `pod`, tracking it.
    pub fn start_container(
        &self,
        pod: &str,
        config: &api::ContainerConfig,
        pod_config: &api::PodSandboxConfig,
    ) -> Result<String> {
        let id = self.client.create_container(pod, config, pod_config)?;
        self.track(&id);
        self.client.start_container(&id)?;
        Ok(id)
    }

    /// The PID of the task `id` (a pod's sandbox or a container), as
    /// containerd reports it.
    pub fn task_pid(&self, id: &str) -> Result<i32> {
        let out = ctr_k8s(&self.containerd, &["tasks", "ls"])?.ok()?;
        out.stdout
            .lines()
            .skip(1)
            .find_map(|l| {
                let mut cols = l.split_whitespace();
                (cols.next() == Some(id)).then(|| cols.next()?.parse().ok())?
            })
            .ok_or_else(|| anyhow!("no task {id} in `ctr tasks ls`:\n{}", out.stdout))
    }

    /// The live shim servers of this node's CRI namespace: `containerd-shim-*`
    /// processes of this containerd that are not `start` or `delete` calls.
    pub fn shim_servers(&self) -> Vec<procfs::ProcInfo> {
        let mut dir = self
            .containerd
            .dir()
            .as_os_str()
            .as_encoded_bytes()
            .to_vec();
        dir.push(b'/');
        procfs::processes()
            .into_values()
            .filter(|p| p.is_shim_server(CRI_NAMESPACE) && p.environ_mentions(&dir))
            .collect()
    }

    /// The shim socket containerd derives for `id` in the CRI namespace.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        self.ids.socket(id)
    }

    /// Where CRI pins pod network namespaces.
    pub fn netns_dir(&self) -> PathBuf {
        self.containerd
            .state_dir()
            .join("io.containerd.grpc.v1.cri/netns")
    }

    /// What is left of the pods; empty means clean. See the module docs.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.client.pods() {
            Ok(pods) => out.extend(pods.into_iter().map(|p| format!("pod sandbox: {p}"))),
            Err(e) => out.push(format!("{e:#}")),
        }
        match self.client.containers() {
            Ok(cs) => out.extend(cs.into_iter().map(|c| format!("CRI container: {c}"))),
            Err(e) => out.push(format!("{e:#}")),
        }
        for what in ["containers", "tasks"] {
            match ctr_k8s(&self.containerd, &[what, "ls", "-q"]).and_then(CmdOutput::ok) {
                Ok(o) => out.extend(
                    o.stdout
                        .split_whitespace()
                        .map(|id| format!("containerd {what}: {id}")),
                ),
                Err(e) => out.push(format!("{e:#}")),
            }
        }
        out.extend(self.containerd.leftovers(&self.before.host));
        for id in self.ids.ids.lock().unwrap().iter() {
            let socket = self.shim_socket(id);
            if socket.exists() {
                out.push(format!("shim socket of {id}: {}", socket.display()));
            }
            let runc = TrackedIds::runc_state(id);
            if runc.exists() {
                out.push(format!("runc state: {}", runc.display()));
            }
        }
        for ns in entries(&self.netns_dir()) {
            out.push(format!("network namespace: {}", ns.display()));
        }
        for ns in entries(Path::new(HOST_NETNS_DIR)).difference(&self.before.host_netns) {
            out.push(format!("network namespace: {}", ns.display()));
        }
        out.extend(self.network.leftovers());
        out
    }

    /// Waits up to [`SETTLE_TIMEOUT`] for [`CriNode::leftovers`] to become
    /// empty and panics with the list if it does not.
    pub fn assert_no_leftovers(&self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the pods left {} thing(s) behind on the host:\n  {}",
                    left.len(),
                    left.join("\n  ")
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops and removes every pod CRI knows, best effort.
    fn remove_pods(&self) -> Vec<String> {
        let mut report = Vec::new();
        for pod in self.client.pods().unwrap_or_default() {
            report.push(format!("removed pod {pod}"));
            if let Err(e) = self.client.stop_pod(&pod) {
                report.push(format!("{e:#}"));
            }
            if let Err(e) = self.client.remove_pod(&pod) {
                report.push(format!("{e:#}"));
            }
        }
        report
    }
}

impl Drop for CriNode {
    fn drop(&mut self) {
        let report = self.remove_pods();
        if !report.is_empty() {
            eprintln!("CRI node cleanup:\n  {}", report.join("\n  "));
        }
    }
}

/// Runs `ctr -n k8s.io <args>` against `containerd`.
pub fn ctr_k8s(containerd: &Containerd, args: &[&str]) -> Result<CmdOutput> {
    let mut c = Command::new("ctr");
    c.arg("-a")
        .arg(containerd.address())
        .args(["-n", CRI_NAMESPACE])
        .args(args);
    command::run(c, None, command::DEFAULT_TIMEOUT)
}

fn entries(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}
