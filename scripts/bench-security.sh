#!/usr/bin/env bash
# The cost of authentication and TLS on the publish path: a 3-process group
# (deploy/local/run.sh) with security off, with [auth] on, and with [auth] and [tls] on,
# interleaved for ROUNDS rounds (default 2); each round: a fresh data/local, `topic create`,
# `bench produce -c 1 --duration 10`, then `-c 1024 --duration 10`. Prints one line per run:
# mode, c=1 msgs/s and p50/p99 ms, c=1024 msgs/s. Release build: cargo build --release --bins.
# OLD_BIN=path adds a mode "before": another build's raftmq with security off (for a
# build-to-build comparison in the same run; OLD_NO_HTTP=1 when that build predates the
# metrics listener, which it then runs without). MODES="before off" runs only those.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${RAFTMQ_BIN:-./target/release/raftmq}
[ -x "$bin" ] || { echo "build first: cargo build --release --workspace --bins" >&2; exit 1; }
rounds=${ROUNDS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" certs dev "$work/certs" >/dev/null
export RAFTMQ_ACCESS_KEY=bench-admin RAFTMQ_SECRET_KEY=bench-secret-1

configs() {  # configs MODE: broker configs of MODE in $work/MODE
    local mode=$1 dir=$work/$1
    mkdir -p "$dir"
    for i in 1 2 3; do
        if [ "$mode" = before ] && [ -n "${OLD_NO_HTTP:-}" ]; then
            grep -v '^http_listen' "deploy/local/broker-n$i.toml" > "$dir/broker-n$i.toml"
        else
            cp "deploy/local/broker-n$i.toml" "$dir/broker-n$i.toml"
        fi
        if [ "$mode" = auth ] || [ "$mode" = auth-tls ]; then
            printf '\n[auth]\nenabled = true\nadmin_access_key = "%s"\nadmin_secret_key = "%s"\n' \
                "$RAFTMQ_ACCESS_KEY" "$RAFTMQ_SECRET_KEY" >> "$dir/broker-n$i.toml"
        fi
        if [ "$mode" = auth-tls ]; then
            printf '\n[tls]\ncert = "%s"\nkey = "%s"\nca = "%s"\n' \
                "$work/certs/node.pem" "$work/certs/node-key.pem" "$work/certs/ca.pem" >> "$dir/broker-n$i.toml"
        fi
    done
}

run() {  # run MODE: one round of MODE; prints its line
    local mode=$1 flags=() ns_args="" bin=$bin config=$1 ns_http=127.0.0.1:9877
    if [ "$mode" = before ]; then
        bin=$OLD_BIN
        if [ -n "${OLD_NO_HTTP:-}" ]; then ns_http=""; else config=off; fi
    fi
    if [ "$mode" = auth-tls ]; then
        flags+=(--tls-ca "$work/certs/ca.pem")
        ns_args="--cert $work/certs/node.pem --key $work/certs/node-key.pem --client-ca $work/certs/ca.pem"
    fi
    rm -rf data/local
    RAFTMQ_CONFIG_DIR=$work/$config RAFTMQ_NAMESRV_ARGS=$ns_args RAFTMQ_BIN=$bin \
        RAFTMQ_NAMESRV_HTTP=$ns_http \
        deploy/local/run.sh > "$work/run.log" 2>&1 &
    local pid=$!
    local deadline=$((SECONDS + 90))
    until grep -q '^NameServer 127.0.0.1:9876' "$work/run.log"; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/run.log" >&2; exit 1; }
        [ "$SECONDS" -lt "$deadline" ] || { echo "cluster not ready" >&2; exit 1; }
        sleep 0.2
    done
    local ok=""
    for _ in $(seq 1 100); do
        if env "${env_off[@]}" "$bin" "${flags[@]}" topic create BenchTopic >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.3
    done
    [ -n "$ok" ] || { echo "topic create failed" >&2; exit 1; }
    local one many
    one=$(env "${env_off[@]}" "$bin" "${flags[@]}" --json bench produce -c 1 --duration 10)
    many=$(env "${env_off[@]}" "$bin" "${flags[@]}" --json bench produce -c 1024 --duration 10)
    kill -TERM "$pid"
    wait "$pid" || true
    python3 - "$mode" "$one" "$many" <<'PY'
import json, sys
mode, one, many = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"{mode:9} c=1 {one['msgs_per_s']:7.0f} msgs/s p50 {one['p50_ms']:.3f} p99 {one['p99_ms']:.3f} ms"
      f" | c=1024 {many['msgs_per_s']:7.0f} msgs/s p99 {many['p99_ms']:.1f} ms errors {one['errors'] + many['errors']}")
PY
}

modes="off auth auth-tls"
[ -n "${OLD_BIN:-}" ] && modes="before $modes"
modes=${MODES:-$modes}
for mode in off auth auth-tls; do configs "$mode"; done
[ -n "${OLD_NO_HTTP:-}" ] && configs before
for r in $(seq 1 "$rounds"); do
    for mode in $modes; do
        env_off=()
        case $mode in off | before) env_off=(-u RAFTMQ_ACCESS_KEY -u RAFTMQ_SECRET_KEY) ;; esac
        echo -n "round $r: "
        run "$mode"
    done
done
