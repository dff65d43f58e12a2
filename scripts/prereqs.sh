#!/usr/bin/env bash
# Installs the system packages raftmq's build and tests need on Debian/Ubuntu, when run as
# root; otherwise prints the exact command to run. Idempotent and quiet when all is there.
set -euo pipefail

# libclang-dev: RocksDB's bindgen. iptables, iproute2: the chaos harness's partitions.
# chromium, nodejs, npm: the console's browser tests (playwright-core drives Debian's
# chromium). Then the Python venv with the RocketMQ C++ client (scripts/remoting-venv.sh)
# the rocketmq-client-rust driver (scripts/remoting-rust.sh) and the browser tests' npm
# packages (scripts/browser-deps.sh).
# systemd: systemd-analyze for the units' check (scripts/deploy-check.sh).
packages=(libclang-dev iptables iproute2 chromium nodejs systemd)
# Debian's nodejs comes without npm (its own package); NodeSource's nodejs bundles npm and
# conflicts with Debian's. Ask for the package only when no npm is on PATH.
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not on PATH; install Rust 1.95 or newer (https://rustup.rs)" >&2
    exit 1
fi
if [ ${#missing[@]} -eq 0 ]; then
    :
elif [ "$(id -u)" -eq 0 ]; then
    echo "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "error: missing system packages: ${missing[*]}" >&2
    echo "run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

# The Apache RocketMQ C++ client (PyPI rocketmq, pinned with its hash) in a venv, for the
# remoting compatibility tests.
"$(dirname "$0")/remoting-venv.sh"

# rocketmq-client-rust (crates.io, pinned by tests/remoting-rust/Cargo.lock): the remoting
# client whose transactional producer the remoting transaction tests drive.
"$(dirname "$0")/remoting-rust.sh"

# playwright-core (pinned by console/browser/package-lock.json) for the browser tests.
"$(dirname "$0")/browser-deps.sh"
