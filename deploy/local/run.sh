#!/usr/bin/env bash
# Starts a NameServer and a 3-process broker group from deploy/local/, logs in
# ./data/local/*.log; stop with ctrl-c. Expects `raftmq` built in release mode.
# RAFTMQ_CONFIG_DIR names another directory of broker-n{1,2,3}.toml (scripts/bench-security.sh
# uses copies with [auth] and [tls]); RAFTMQ_NAMESRV_ARGS adds NameServer flags (--cert ...).
# It waits for each process's ready line in its log (RAFTMQ_START_TIMEOUT seconds, default
# 60); if one exits or is not ready by then, it prints that log's error lines, stops what it
# started and exits 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${RAFTMQ_BIN:-./target/release/raftmq}
[ -x "$bin" ] || { echo "build first: cargo build --release --bin raftmq" >&2; exit 1; }
start_timeout=${RAFTMQ_START_TIMEOUT:-60}
mkdir -p data/local
# Three brokers share this host's cores: one tokio worker per ceil(cores / 3), so they do
# not wake more threads than there are cores (on 2 cores: 59.6k -> 75.8k msgs/s at
# saturation, docs/benchmarks.md). A broker with a machine to itself uses every core.
export TOKIO_WORKER_THREADS=${TOKIO_WORKER_THREADS:-$(( ($(nproc) + 2) / 3 ))}
# The ready lines are info events; a RUST_LOG of one's own must not filter them out.
if [ -n "${RUST_LOG:-}" ]; then
    export RUST_LOG="$RUST_LOG,raftmq_namesrv::server=info,raftmq_broker::node=info"
fi

pids=()   # the children, in start order
names=()  # what each is, for messages
logs=()   # where each logs
ready=()  # the log line that says each is serving
stop_all() {
    if [ ${#pids[@]} -gt 0 ]; then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait || true
    fi
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOG READY-LINE ARGS...: runs `raftmq ARGS...` in the background.
start() {
    local name=$1 log=$2 line=$3
    shift 3
    "$bin" "$@" > "$log" 2>&1 &
    pids+=($!)
    names+=("$name")
    logs+=("$log")
    ready+=("$line")
}

# fail I WHY: says why child I did not come up, with its log's error lines, and exits 1.
fail() {
    local i=$1 why=$2 log=${logs[$1]}
    echo "error: ${names[$i]} (pid ${pids[$i]}) $why; from $log:" >&2
    if ! grep -E 'error|ERROR|panicked' "$log" | tail -n 5 | sed 's/^/  /' >&2; then
        tail -n 5 "$log" | sed 's/^/  /' >&2
    fi
    echo "stopping what was started" >&2
    exit 1
}

# wait_ready I: waits until child I logged its ready line and is still running.
wait_ready() {
    local i=$1 deadline=$((SECONDS + start_timeout))
    until grep -qF "${ready[$i]}" "${logs[$i]}" 2>/dev/null; do
        kill -0 "${pids[$i]}" 2>/dev/null || fail "$i" "exited during start-up"
        [ "$SECONDS" -lt "$deadline" ] || fail "$i" "was not ready within ${start_timeout}s"
        sleep 0.2
    done
    kill -0 "${pids[$i]}" 2>/dev/null || fail "$i" "exited after start-up"
}

config_dir=${RAFTMQ_CONFIG_DIR:-deploy/local}
# The NameServer's metrics listener; RAFTMQ_NAMESRV_HTTP="" starts it without one.
namesrv_http=${RAFTMQ_NAMESRV_HTTP-127.0.0.1:9877}
# shellcheck disable=SC2086 # word splitting of the extra flags is intended
start "NameServer" data/local/namesrv.log "NameServer listening" namesrv \
    ${namesrv_http:+--http-listen "$namesrv_http"} ${RAFTMQ_NAMESRV_ARGS:-}
for i in 1 2 3; do
    start "broker node $i" "data/local/n$i.log" "front end started" \
        broker --config "$config_dir/broker-n$i.toml"
done
for i in "${!pids[@]}"; do
    wait_ready "$i"
done
echo "NameServer 127.0.0.1:9876; brokers 127.0.0.1:10911 :20911 :30911 (logs in data/local/)"
echo "metrics: http://127.0.0.1:9877/metrics (NameServer), :10913 :20913 :30913 (brokers)"
echo "try: $bin cluster list; $bin topic create TopicTest"
wait
