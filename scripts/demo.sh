#!/usr/bin/env bash
# The demo: install what is needed, build and install the shim, start a
# private containerd, and run a busybox container on the default class.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
scripts/install.sh

work=/run/strata-demo
sock="$work/containerd.sock"
mkdir -p "$work"
cat > "$work/config.toml" <<CONF
version = 2
root = "$work/root"
state = "$work/state"
oom_score = 0
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
CONF

containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
stop() {
    ctr -a "$sock" task kill -s SIGKILL strata-demo >/dev/null 2>&1 || true
    ctr -a "$sock" container rm strata-demo >/dev/null 2>&1 || true
    kill "$containerd_pid" 2>/dev/null || true
    wait "$containerd_pid" 2>/dev/null || true
}
trap stop EXIT
for _ in $(seq 50); do ctr -a "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done

cargo run --release -q -p strata-e2e --bin build-busybox-image -- "$work/busybox.tar"
ctr -a "$sock" images import "$work/busybox.tar" >/dev/null

echo "strata demo: running busybox on the default class"
ctr -a "$sock" run --rm --runtime io.containerd.strata.v2 docker.io/library/busybox:latest strata-demo \
    sh -c 'echo "hello from strata: pid $$, kernel $(uname -r), hostname $(hostname)"'
