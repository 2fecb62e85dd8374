//! Kubernetes pods on Strata's CRI runtime handlers, through containerd
//! 1.6's CRI plugin and a CRI v1 client, as the kubelet runs them; every case
//! also runs on the `runc` handler (containerd's runc shim) to prove the test
//! itself.
//!
//! Each case runs on a [`CriNode`] of its own (private containerd, CNI
//! bridge, images) and ends by checking that nothing of the pod is left:
//! processes, shim sockets, mounts, cgroups, network namespaces, veth
//! devices, CNI state.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use strata_e2e::cri::{api, wait_for, CriNode, RUNC_HANDLER};
use strata_e2e::procfs;

/// The Strata runtime handlers the host can run, each
/// `runtime_type = "io.containerd.strata.v2"` with a `ConfigPath` whose
/// `default_class` is the class.
const STRATA_HANDLERS: &[&str] = &["strata-native", "strata-interpose", "strata-microvm"];

/// The handler whose pods run in one virtual machine each: the pod's
/// namespaces are the guest's, not the host's, and the VM has no network
/// device (the pod's CNI address is not inside it).
const MICROVM_HANDLER: &str = "strata-microvm";

/// The port the web container listens on inside the pod.
const PORT: u16 = 8080;

/// How long a container may take to answer after it started.
const READY: Duration = Duration::from_secs(10);

fn node() -> CriNode {
    CriNode::start().unwrap_or_else(|e| panic!("starting a CRI node: {e:#}"))
}

/// Runs `cmd` in `container` and returns its stdout, failing unless it
/// exits 0.
fn exec_ok(node: &CriNode, container: &str, cmd: &[&str]) -> String {
    let r = node
        .cri()
        .exec_sync(container, cmd, 10)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        r.exit_code,
        0,
        "{cmd:?} in {container}: stdout {:?} stderr {:?}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// The namespace links (`net:[…]`, …) of `kind` seen from inside
/// `container`.
fn namespace_in(node: &CriNode, container: &str, kind: &str) -> String {
    exec_ok(
        node,
        container,
        &["readlink", &format!("/proc/self/ns/{kind}")],
    )
    .trim()
    .to_owned()
}

fn host_namespace(pid: i32, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/ns/{kind}: {e}"))
        .display()
        .to_string()
}

/// Lines of a CRI log file: `<RFC 3339 time> <stream> <F|P> <text>`.
fn log_lines(path: &Path) -> Vec<(String, String, String, String)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            Some((
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
            ))
        })
        .collect()
}

/// Checks that a `strata-<class>` handler ran its pod on that class, chosen
/// as the default class of the configuration its `ConfigPath` names (the
/// shim logs its choice into containerd's log).
fn assert_class(node: &CriNode, handler: &str) {
    let Some(class) = handler.strip_prefix("strata-") else {
        return;
    };
    let wanted = format!("(DefaultClass) runs on the {class} backend");
    let log = fs::read_to_string(node.containerd().log_path()).unwrap_or_default();
    assert!(
        log.contains(&wanted),
        "containerd's log does not show the shim choosing class {class}: no {wanted:?}"
    );
}

/// The QEMU processes whose parent is `parent`.
fn qemu_children(parent: i32) -> Vec<i32> {
    procfs::processes()
        .into_values()
        .filter(|p| {
            p.ppid == parent
                && !p.is_zombie()
                && p.cmdline.first().is_some_and(|a| {
                    Path::new(a)
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("qemu-system"))
                })
        })
        .map(|p| p.pid)
        .collect()
}

/// A pod of a web server and a container that ignores SIGTERM, through its
/// whole life: shared namespaces, localhost traffic, one shim, ExecSync,
/// logs, stats, StopContainer with a grace period, pod removal.
fn pod_lifecycle(handler: &str) {
    let node = node();
    // The client speaks CRI v1 (`runtime.v1`) to containerd.
    let version = node.cri().version().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        (
            version.runtime_name.as_str(),
            version.runtime_api_version.as_str()
        ),
        ("containerd", "v1")
    );
    let pod_config = node.pod_config("web", false);
    let started = Instant::now();
    let pod = node
        .run_pod(&pod_config, handler)
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!("measured: {handler}: RunPodSandbox {:?}", started.elapsed());
    assert_class(&node, handler);

    // The pod got an address on this node's CNI network.
    let status = node.cri().pod_status(&pod).unwrap();
    assert_eq!(status.state, api::PodSandboxState::SandboxReady as i32);
    let ip = status
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    let prefix = format!("{}.", node.network().prefix);
    assert!(
        ip.starts_with(&prefix),
        "pod IP {ip:?} is not in {prefix}0/24"
    );
    assert!(node.network().bridge_exists());
    // While the pod runs, what the leftover check looks for is there: the
    // pinned network namespace, the veth, the IPAM reservation, the CNI
    // cache entry.
    let pinned: Vec<_> = fs::read_dir(node.netns_dir())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(pinned.len(), 1, "pinned network namespaces: {pinned:?}");
    let attached = node.network().leftovers();
    for what in ["IPAM reservation", "device on bridge", "CNI cache"] {
        assert!(
            attached.iter().any(|l| l.starts_with(what)),
            "no {what} while the pod runs: {attached:?}"
        );
    }

    let web_cmd = format!(
        "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p {PORT} -h /www"
    );
    let web = node
        .start_container(
            &pod,
            &node.container_config("web", &["sh", "-c", &web_cmd]),
            &pod_config,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let stubborn = node
        .start_container(
            &pod,
            &node.container_config(
                "stubborn",
                &[
                    "sh",
                    "-c",
                    "trap '' TERM; echo to-stdout; echo to-stderr >&2; while :; do sleep 1; done",
                ],
            ),
            &pod_config,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));

    // One shim server serves the sandbox and both containers.
    let servers = node.shim_servers();
    assert_eq!(
        servers.len(),
        1,
        "expected one shim server for the pod, found:\n{}",
        servers
            .iter()
            .map(|p| p.describe())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(node.shim_socket(&pod).exists(), "the pod's shim socket");
    if handler == MICROVM_HANDLER {
        // The sandbox and both containers run in one VM: one QEMU, a child
        // of the pod's shim server.
        let qemus = qemu_children(servers[0].pid);
        assert_eq!(qemus.len(), 1, "QEMU processes of the pod: {qemus:?}");
        let status = fs::read_to_string(format!("/proc/{}/status", qemus[0])).unwrap_or_default();
        let rss = status.lines().find(|l| l.starts_with("VmRSS:"));
        println!("measured: {handler}: the pod's QEMU {rss:?} with two app containers");
    }

    // The containers talk over the pod's loopback.
    let url = format!("http://127.0.0.1:{PORT}/");
    let page = wait_for(READY, "the web container answering on localhost", || {
        let r = node
            .cri()
            .exec_sync(&stubborn, &["wget", "-q", "-O", "-", &url], 5)
            .ok()?;
        (r.exit_code == 0).then(|| String::from_utf8_lossy(&r.stdout).into_owned())
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(page, "hello-from-the-pod\n");

    if handler == MICROVM_HANDLER {
        // Both containers run on the guest kernel, not the host's ...
        let guest = fs::read_to_string("/var/lib/strata/microvm/kernel-release")
            .unwrap_or_else(|e| panic!("the guest kernel's release: {e}"));
        let host = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_ne!(guest.trim(), host.trim());
        for c in [&web, &stubborn] {
            assert_eq!(exec_ok(&node, c, &["uname", "-r"]).trim(), guest.trim());
        }
        // ... in the VM's network, IPC and UTS namespaces: the guest
        // kernel's, which the host's namespaces say nothing about.
        for kind in ["net", "ipc", "uts"] {
            assert_eq!(
                namespace_in(&node, &web, kind),
                namespace_in(&node, &stubborn, kind),
                "{kind} of web and stubborn"
            );
        }
    } else {
        // Both containers are in the sandbox's network, IPC and UTS namespaces.
        let pause = node.task_pid(&pod).unwrap_or_else(|e| panic!("{e:#}"));
        for kind in ["net", "ipc", "uts"] {
            let sandbox = host_namespace(pause, kind);
            assert_eq!(namespace_in(&node, &web, kind), sandbox, "{kind} of web");
            assert_eq!(
                namespace_in(&node, &stubborn, kind),
                sandbox,
                "{kind} of stubborn"
            );
            assert_ne!(
                sandbox,
                host_namespace(std::process::id() as i32, kind),
                "the pod's {kind} namespace is the host's"
            );
        }
    }
    for c in [&web, &stubborn] {
        assert_eq!(exec_ok(&node, c, &["hostname"]).trim(), "web");
    }
    // A pod VM has no network device: the CNI address stays on the host.
    if handler != MICROVM_HANDLER {
        let addr = exec_ok(&node, &web, &["ip", "-o", "-4", "addr", "show", "eth0"]);
        assert!(addr.contains(&format!("{ip}/24")), "eth0 of web: {addr}");
    }

    // ExecSync returns both streams and the exit code.
    let r = node
        .cri()
        .exec_sync(&web, &["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        (r.exit_code, &r.stdout[..], &r.stderr[..]),
        (3, &b"out\n"[..], &b"err\n"[..])
    );

    // containerd's CRI writes the container's output in the CRI log format.
    let log = node.log_dir("web").join("stubborn.log");
    let lines = wait_for(READY, "both lines in the container log", || {
        let lines = log_lines(&log);
        let has = |stream: &str, text: &str| {
            lines
                .iter()
                .any(|(_, s, tag, t)| s == stream && tag == "F" && t == text)
        };
        (has("stdout", "to-stdout") && has("stderr", "to-stderr")).then_some(lines)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}; {}:\n{}",
            log.display(),
            fs::read_to_string(&log).unwrap_or_default()
        )
    });
    for (time, ..) in &lines {
        assert!(
            time.len() >= 20 && time.as_bytes()[10] == b'T',
            "not an RFC 3339 time: {time}"
        );
    }

    // ContainerStats reports memory and CPU.
    let stats = node
        .cri()
        .container_stats(&web)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let memory = stats.memory.expect("memory stats");
    let working_set = memory.working_set_bytes.map_or(0, |v| v.value);
    assert!(working_set > 0, "memory working set {working_set}");
    let cpu = stats.cpu.expect("cpu stats");
    let cpu_ns = cpu.usage_core_nano_seconds.map_or(0, |v| v.value);
    assert!(cpu_ns > 0, "cpu usage {cpu_ns} ns");

    // A container that ignores SIGTERM is killed once its grace period ends.
    let grace = 2;
    let started = Instant::now();
    node.cri()
        .stop_container(&stubborn, grace)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(grace as u64 * 1000 - 100)
            && took < Duration::from_secs(grace as u64 + 5),
        "StopContainer with a {grace}s grace period took {took:?}"
    );
    let st = node.cri().container_status(&stubborn).unwrap();
    assert_eq!(st.state, api::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 137, "killed by SIGKILL");
    node.cri().remove_container(&stubborn).unwrap();

    // The server still serves the rest of the pod.
    assert_eq!(node.shim_servers().len(), 1);
    assert_eq!(
        exec_ok(&node, &web, &["echo", "still-here"]),
        "still-here\n"
    );

    // Stopping the pod deletes its last tasks: the server exits and removes
    // its socket.
    node.cri()
        .stop_pod(&pod)
        .unwrap_or_else(|e| panic!("{e:#}"));
    wait_for(READY, "the pod's shim server to exit", || {
        node.shim_servers().is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!node.shim_socket(&pod).exists(), "the pod's shim socket");
    node.cri()
        .remove_pod(&pod)
        .unwrap_or_else(|e| panic!("{e:#}"));
    node.assert_no_leftovers();
}

#[test]
fn pod_lifecycle_on_strata_handlers() {
    for handler in STRATA_HANDLERS {
        pod_lifecycle(handler);
    }
}

#[test]
fn pod_lifecycle_on_runc() {
    pod_lifecycle(RUNC_HANDLER);
}

/// A host-network pod runs in the host's network namespace and gets no
/// network namespace or CNI attachment of its own.
fn host_network_pod(handler: &str) {
    let node = node();
    let pod_config = node.pod_config("hostnet", true);
    let pod = node
        .run_pod(&pod_config, handler)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_class(&node, handler);
    let c = node
        .start_container(
            &pod,
            &node.container_config("app", &["sleep", "3600"]),
            &pod_config,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let host = host_namespace(std::process::id() as i32, "net");
    assert_eq!(namespace_in(&node, &c, "net"), host);
    assert_ne!(
        namespace_in(&node, &c, "ipc"),
        host_namespace(std::process::id() as i32, "ipc"),
        "the pod keeps an IPC namespace of its own"
    );
    assert!(
        fs::read_dir(node.netns_dir()).map_or(true, |mut d| d.next().is_none()),
        "a host-network pod got a network namespace"
    );
    assert!(node.network().leftovers().is_empty());
    node.cri()
        .stop_pod(&pod)
        .unwrap_or_else(|e| panic!("{e:#}"));
    node.cri()
        .remove_pod(&pod)
        .unwrap_or_else(|e| panic!("{e:#}"));
    node.assert_no_leftovers();
}

#[test]
fn host_network_pod_on_strata_handlers() {
    // A pod VM has a network stack of its own by nature: it cannot run in
    // the host's network namespace, so the case does not apply to it.
    for handler in STRATA_HANDLERS.iter().filter(|&&h| h != MICROVM_HANDLER) {
        host_network_pod(handler);
    }
}

#[test]
fn host_network_pod_on_runc() {
    host_network_pod(RUNC_HANDLER);
}

/// When the pod's shim server is killed, containerd cleans up each of the
/// pod's containers through the shim's `delete`, and the pod can still be
/// stopped and removed without anything left behind.
fn killed_pod_shim(handler: &str) {
    let node = node();
    let pod_config = node.pod_config("killed", false);
    let pod = node
        .run_pod(&pod_config, handler)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_class(&node, handler);
    let c = node
        .start_container(
            &pod,
            &node.container_config("app", &["sleep", "3600"]),
            &pod_config,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let servers = node.shim_servers();
    assert_eq!(servers.len(), 1);
    let qemus = qemu_children(servers[0].pid);
    if handler == MICROVM_HANDLER {
        assert_eq!(qemus.len(), 1, "QEMU processes of the pod: {qemus:?}");
    }
    // SAFETY: kill(2) by PID of the shim server this test's containerd
    // started for the pod.
    unsafe {
        libc::kill(servers[0].pid, libc::SIGKILL);
    }
    wait_for(READY, "the container to be reported exited", || {
        let st = node.cri().container_status(&c).ok()?;
        (st.state == api::ContainerState::ContainerExited as i32).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    node.cri()
        .stop_pod(&pod)
        .unwrap_or_else(|e| panic!("{e:#}"));
    node.cri()
        .remove_pod(&pod)
        .unwrap_or_else(|e| panic!("{e:#}"));
    if handler == MICROVM_HANDLER {
        // QEMU does not end with its shim (its console pipe and agent
        // socket closing leave it running): the shim's `delete` for the
        // sandbox finds it through its pid file and kills it.
        wait_for(READY, "the pod's QEMU to be gone", || {
            (!procfs::alive(qemus[0])).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    }
    if handler == RUNC_HANDLER {
        // containerd's runc shim leaves the socket of a killed server behind
        // (Strata's `delete` removes it); removed here as an operator would.
        let _ = fs::remove_file(node.shim_socket(&pod));
    }
    node.assert_no_leftovers();
}

#[test]
fn killed_pod_shim_on_strata_handlers() {
    for handler in STRATA_HANDLERS {
        killed_pod_shim(handler);
    }
}

#[test]
fn killed_pod_shim_on_runc() {
    killed_pod_shim(RUNC_HANDLER);
}

/// Each pod has a server of its own, and the pods outlive a containerd
/// restart: containerd finds each container's server again through the
/// address its bundle records, and a container added afterwards joins its
/// pod's running server.
fn two_pods_across_a_restart(handler: &str) {
    let node = node();
    let mut pods = Vec::new();
    for name in ["one", "two"] {
        let config = node.pod_config(name, false);
        let pod = node
            .run_pod(&config, handler)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let c = node
            .start_container(
                &pod,
                &node.container_config("app", &["sleep", "3600"]),
                &config,
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        pods.push((pod, config, c));
    }
    assert_class(&node, handler);
    let servers = |n: usize, when: &str| {
        let found = node.shim_servers();
        assert_eq!(
            found.len(),
            n,
            "shim servers {when}:\n{}",
            found
                .iter()
                .map(|p| p.describe())
                .collect::<Vec<_>>()
                .join("\n")
        );
        found.iter().map(|p| p.pid).collect::<Vec<_>>()
    };
    let before = servers(2, "for two pods");

    node.containerd()
        .stop_daemon(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    node.containerd()
        .restart_daemon(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    for (pod, _, c) in &pods {
        let out = wait_for(READY, "ExecSync after the restart", || {
            let r = node.cri().exec_sync(c, &["echo", "alive"], 5).ok()?;
            (r.exit_code == 0).then_some(r.stdout)
        })
        .unwrap_or_else(|e| panic!("{e:#} (pod {pod})"));
        assert_eq!(out, b"alive\n");
    }
    assert_eq!(servers(2, "after the restart"), before);

    let (pod, config, _) = &pods[0];
    let late = node
        .start_container(
            pod,
            &node.container_config("late", &["sleep", "3600"]),
            config,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(exec_ok(&node, &late, &["echo", "late"]), "late\n");
    assert_eq!(servers(2, "after adding a container"), before);

    for (pod, ..) in &pods {
        node.cri().stop_pod(pod).unwrap_or_else(|e| panic!("{e:#}"));
        node.cri()
            .remove_pod(pod)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    node.assert_no_leftovers();
}

#[test]
fn two_pods_across_a_restart_on_strata_handlers() {
    for handler in STRATA_HANDLERS {
        two_pods_across_a_restart(handler);
    }
}

#[test]
fn two_pods_across_a_restart_on_runc() {
    two_pods_across_a_restart(RUNC_HANDLER);
}
