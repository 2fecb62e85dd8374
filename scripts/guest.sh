#!/usr/bin/env bash
# Prepares what the microvm class boots: Debian's cloud kernel, unpacked
# (never installed on the host) as the bzImage QEMU boots and the ELF vmlinux
# the built-in VMM boots, and an initramfs whose /init is Strata's
# static guest agent, with the kernel modules the VM's devices need.
# Idempotent: the kernel is fetched once; the agent and initramfs are rebuilt
# when the agent changed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
data=/var/lib/strata/microvm
# Drivers of the VM's devices (virtio-mmio transport, the disk, the agent's
# serial port) and the root filesystem's type; dependencies come along.
wanted=(virtio_mmio virtio_blk virtio_console ext4)

mkdir -p "$data"

if [ ! -f "$data/vmlinuz" ] || [ ! -d "$data/modules" ]; then
    if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
        apt-get update -qq
    fi
    package=$(apt-cache depends linux-image-cloud-amd64 |
        awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$package" ] || { echo "strata guest: no kernel package behind linux-image-cloud-amd64" >&2; exit 1; }
    echo "strata guest: fetching $package"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # apt downloads as its own user where it can write.
    chown _apt "$work" 2>/dev/null || true
    (cd "$work" && apt-get download -qq "$package")
    dpkg -x "$work"/*.deb "$work/unpacked"
    release=$(basename "$(ls -d "$work"/unpacked/lib/modules/*)")
    moddir="$work/unpacked/lib/modules/$release"
    rm -rf "$data/modules.new"
    mkdir -p "$data/modules.new"
    # The closure of the wanted modules over their `depends=` fields;
    # a module built into the kernel needs no file.
    queue=("${wanted[@]}")
    seen=" "
    while ((${#queue[@]})); do
        name=${queue[0]}
        queue=("${queue[@]:1}")
        case "$seen" in *" $name "*) continue ;; esac
        seen="$seen$name "
        file=$(find "$moddir/kernel" \( -name "$name.ko" -o -name "${name//_/-}.ko" \) | head -n1)
        if [ -z "$file" ]; then
            grep -qE "/(${name}|${name//_/-})\.ko\$" "$moddir/modules.builtin" ||
                { echo "strata guest: module $name is neither built in nor in $package" >&2; exit 1; }
            continue
        fi
        cp "$file" "$data/modules.new/"
        depends=$(tr '\0' '\n' <"$file" | sed -n 's/^depends=//p' | head -n1)
        IFS=, read -r -a more <<<"$depends"
        queue+=("${more[@]}")
    done
    cp "$work/unpacked/boot/vmlinuz-$release" "$data/vmlinuz.new"
    rm -rf "$data/modules"
    mv "$data/modules.new" "$data/modules"
    echo "$release" >"$data/kernel-release"
    mv "$data/vmlinuz.new" "$data/vmlinuz"
fi

# The built-in VMM enters the kernel at the 64-bit entry of an uncompressed
# ELF vmlinux: the bzImage's payload is LZ4 (the kernel's legacy LZ4 format,
# magic 02 21 4c 18), decompressed from its magic on; lz4 stops with an
# error at the data after the stream, so the result is checked to be an ELF.
if [ ! -f "$data/vmlinux" ] || [ "$data/vmlinuz" -nt "$data/vmlinux" ]; then
    command -v lz4 >/dev/null || { echo "strata guest: lz4 is missing (scripts/setup.sh installs it)" >&2; exit 1; }
    offset=$(LC_ALL=C grep -m1 -aboP '\x02\x21\x4c\x18' "$data/vmlinuz" | head -n1 | cut -d: -f1)
    [ -n "$offset" ] || { echo "strata guest: no LZ4 stream in $data/vmlinuz" >&2; exit 1; }
    tail -c +"$((offset + 1))" "$data/vmlinuz" | lz4 -dc >"$data/vmlinux.new" 2>/dev/null || true
    if [ "$(head -c 4 "$data/vmlinux.new" | od -An -tx1 | tr -d ' \n')" != 7f454c46 ]; then
        rm -f "$data/vmlinux.new"
        echo "strata guest: the LZ4 stream of $data/vmlinuz did not decompress to an ELF vmlinux" >&2
        exit 1
    fi
    mv "$data/vmlinux.new" "$data/vmlinux"
    echo "strata guest: extracted $data/vmlinux ($(du -h "$data/vmlinux" | cut -f1))"
fi

if ! command -v cargo >/dev/null 2>&1; then
    for dir in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
        [ -x "$dir/cargo" ] && export PATH="$dir:$PATH"
    done
fi
# The guest has no libraries: the agent is linked statically, libseccomp
# (which applies the containers' seccomp profiles) included.
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" \
    LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu \
    cargo build --release -q -p strata-agent --target x86_64-unknown-linux-gnu --target-dir target/agent)
agent="$root/target/agent/x86_64-unknown-linux-gnu/release/strata-agent"
if readelf -d "$agent" | grep -q NEEDED; then
    echo "strata guest: $agent needs shared libraries; the guest has none" >&2
    exit 1
fi

if [ ! -f "$data/initramfs.img" ] || [ "$agent" -nt "$data/initramfs.img" ] ||
    [ "$data/vmlinuz" -nt "$data/initramfs.img" ]; then
    stage=$(mktemp -d)
    mkdir -p "$stage/lib/modules" "$stage/dev" "$stage/proc" "$stage/sys" "$stage/run"
    install -m 0755 "$agent" "$stage/init"
    cp "$data"/modules/*.ko "$stage/lib/modules/" 2>/dev/null || true
    (cd "$stage" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 >"$data/initramfs.img.new")
    rm -rf "$stage"
    mv "$data/initramfs.img.new" "$data/initramfs.img"
    echo "strata guest: built $data/initramfs.img ($(du -h "$data/initramfs.img" | cut -f1))"
fi
