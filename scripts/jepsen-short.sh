#!/usr/bin/env bash
# The CI chaos run, debug build: partition-random-halves (queue workload), kill-leader
# (ordered) and kill-leader (transaction), 60 s each; rolling-restart (every node drained,
# SIGTERMed and restarted in turn, 60 s); grow-online (two groups and two NameServers,
# each in its own namespace: the topic moves onto broker-b and off broker-a, 90 s).
# Fails if anything acknowledged is lost, or anything unexpected or reordered appears.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir="${CARGO_TARGET_DIR:-target}/debug"
out="${JEPSEN_OUT:-target/jepsen-short}"
rm -rf "$out"
"$bin_dir/raftmq-jepsen" run --nemesis partition-random-halves --workload queue --time 60 --rate 100 --out "$out/partition-random-halves"
"$bin_dir/raftmq-jepsen" run --nemesis kill-leader --workload ordered --time 60 --rate 100 --out "$out/kill-leader"
"$bin_dir/raftmq-jepsen" run --nemesis kill-leader --workload transaction --time 60 --rate 100 --out "$out/kill-leader-transaction"
"$bin_dir/raftmq-jepsen" run --nemesis rolling-restart --workload queue --time 60 --rate 100 --out "$out/rolling-restart"
"$bin_dir/raftmq-jepsen" run --nemesis grow-online --workload queue --time 90 --rate 100 --out "$out/grow-online"
