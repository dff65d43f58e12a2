#!/usr/bin/env bash
# The CI chaos run: partition-random-halves (queue workload), kill-leader (ordered) and
# kill-leader (transaction), 60 s each, debug build.
# Fails if anything acknowledged is lost, or anything unexpected or reordered appears.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir="${CARGO_TARGET_DIR:-target}/debug"
out="${JEPSEN_OUT:-target/jepsen-short}"
rm -rf "$out"
"$bin_dir/raftmq-jepsen" run --nemesis partition-random-halves --workload queue --time 60 --rate 100 --out "$out/partition-random-halves"
"$bin_dir/raftmq-jepsen" run --nemesis kill-leader --workload ordered --time 60 --rate 100 --out "$out/kill-leader"
"$bin_dir/raftmq-jepsen" run --nemesis kill-leader --workload transaction --time 60 --rate 100 --out "$out/kill-leader-transaction"
