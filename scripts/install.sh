#!/usr/bin/env bash
# Builds the shim in release mode and installs it, with one symlink per
# runtime class, into PREFIX/bin (default /usr/local).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${PREFIX:-/usr/local}"
cargo build --release -p strata-shim
install -D -m 0755 target/release/containerd-shim-strata-v2 "$prefix/bin/containerd-shim-strata-v2"
for class in native interpose microvm; do
    ln -sf containerd-shim-strata-v2 "$prefix/bin/containerd-shim-strata-$class-v2"
done
echo "strata: installed $prefix/bin/containerd-shim-strata-v2 and its class links"
