#!/usr/bin/env bash
# Installs what building and testing Strata needs on Debian 12, when missing.
# Idempotent: packages already present are not reinstalled.
set -euo pipefail

packages=(
    containerd        # the container manager the shim plugs into
    runc              # the reference runtime the tests and benchmarks compare with
    busybox-static    # the userland of the test and demo images
    podman            # a real client of the runc-compatible `strata` command line
    protobuf-compiler # protoc, for crates that compile .proto files
    containernetworking-plugins # CNI bridge/host-local/loopback for the CRI pod tests
    pkg-config
    libseccomp-dev
    libc6-dev         # libc.a, to link the static strata-probe of the test image
    iproute2
    util-linux
    qemu-system-x86   # the VMM of the microvm class
    e2fsprogs         # mkfs.ext4 -d: a microVM's root filesystem image
    cpio              # the microVM's initramfs
    lz4               # unpacks the guest kernel's vmlinux for the built-in VMM
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "strata setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    for dir in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
        [ -x "$dir/cargo" ] && export PATH="$dir:$PATH"
    done
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "strata setup: no Rust toolchain found (cargo); install Rust 1.85 or newer first" >&2
    exit 1
fi

# The microvm class's guest kernel and initramfs (needs cargo: builds the agent).
bash "$(dirname "${BASH_SOURCE[0]}")/guest.sh"
