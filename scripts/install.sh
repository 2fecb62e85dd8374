#!/usr/bin/env bash
# Builds Strata in release mode and installs, into PREFIX/bin (default
# /usr/local): the shim with one symlink per runtime class, and the
# runc-compatible `strata` command.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${PREFIX:-/usr/local}"
cargo build --release -p strata-shim -p strata-cli
install -D -m 0755 target/release/containerd-shim-strata-v2 "$prefix/bin/containerd-shim-strata-v2"
for class in native interpose microvm; do
    ln -sf containerd-shim-strata-v2 "$prefix/bin/containerd-shim-strata-$class-v2"
done
install -D -m 0755 target/release/strata "$prefix/bin/strata"
echo "strata: installed $prefix/bin/containerd-shim-strata-v2, its class links, and $prefix/bin/strata"
