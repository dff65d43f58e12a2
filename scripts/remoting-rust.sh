#!/usr/bin/env bash
# Builds the rocketmq-client-rust driver (tests/remoting-rust, pinned by its Cargo.lock) that
# the remoting transaction tests run, into target/remoting-rust/debug/rr-tx. Cargo makes it
# a no-op when nothing changed. About 4 minutes from cold on 2 cores.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cargo build --quiet --locked \
    --manifest-path "$repo_root/tests/remoting-rust/Cargo.toml" \
    --target-dir "$repo_root/target/remoting-rust"
