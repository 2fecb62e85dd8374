#!/usr/bin/env bash
# The whole test suite: install what is needed, check formatting and lints,
# build, and run every test, including those against a real containerd.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests start containerd with the freshly built shim.
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads=2
