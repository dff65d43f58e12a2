#!/usr/bin/env bash
# Transactional sends (half message, then commit) next to plain sends, in the same run: a
# 3-process group (deploy/local/run.sh) per round, in which `bench produce` runs plain and
# `--transaction`, at c=1 and c=1024, 10 s each, interleaved; ROUNDS rounds (default 2).
# Prints one line per measurement. Release build: cargo build --release --bins.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${RAFTMQ_BIN:-./target/release/raftmq}
[ -x "$bin" ] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
rounds=${ROUNDS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for r in $(seq 1 "$rounds"); do
    rm -rf data/local
    RAFTMQ_BIN=$bin deploy/local/run.sh > "$work/run.log" 2>&1 &
    pid=$!
    deadline=$((SECONDS + 90))
    until grep -q '^NameServer 127.0.0.1:9876' "$work/run.log"; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/run.log" >&2; exit 1; }
        [ "$SECONDS" -lt "$deadline" ] || { echo "cluster not ready" >&2; exit 1; }
        sleep 0.2
    done
    ok=""
    for _ in $(seq 1 100); do
        if "$bin" topic create BenchTopic >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.3
    done
    [ -n "$ok" ] || { echo "topic create failed" >&2; exit 1; }
    for c in 1 1024; do
        for kind in plain transaction; do
            flag=()
            [ "$kind" = transaction ] && flag=(--transaction)
            line=$("$bin" --json bench produce -c "$c" --duration 10 "${flag[@]}")
            python3 - "$r" "$kind" "$line" <<'PY'
import json, sys
r, kind, b = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"round {r}: {kind:11} c={b['concurrency']:<4} {b['msgs_per_s']:7.0f} msgs/s"
      f" p50 {b['p50_ms']:.3f} p99 {b['p99_ms']:.3f} ms errors {b['errors']}")
PY
        done
    done
    kill -TERM "$pid"
    wait "$pid" || true
done
