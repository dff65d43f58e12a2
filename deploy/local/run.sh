#!/usr/bin/env bash
# Starts a NameServer and a 3-process broker group from deploy/local/, logs in
# ./data/local/*.log; stop with ctrl-c. Expects `raftmq` built in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${RAFTMQ_BIN:-./target/release/raftmq}
[ -x "$bin" ] || { echo "build first: cargo build --release --bin raftmq" >&2; exit 1; }
mkdir -p data/local
# Three brokers share this host's cores: one tokio worker per ceil(cores / 3), so they do
# not wake more threads than there are cores (on 2 cores: 59.6k -> 75.8k msgs/s at
# saturation, docs/benchmarks.md). A broker with a machine to itself uses every core.
export TOKIO_WORKER_THREADS=${TOKIO_WORKER_THREADS:-$(( ($(nproc) + 2) / 3 ))}
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
"$bin" namesrv > data/local/namesrv.log 2>&1 & pids+=($!)
for i in 1 2 3; do
    "$bin" broker --config "deploy/local/broker-n$i.toml" > "data/local/n$i.log" 2>&1 & pids+=($!)
done
echo "NameServer 127.0.0.1:9876; brokers 127.0.0.1:10911 :20911 :30911 (logs in data/local/)"
echo "try: $bin cluster list; $bin topic create TopicTest"
wait
