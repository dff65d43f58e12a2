#!/usr/bin/env bash
# Checks the deployment files offline (no container engine and no Kubernetes cluster can
# run here): hadolint on the Dockerfile; kubernetes-validate --strict on every manifest;
# the broker config the StatefulSets' start script renders, for each pod of both groups,
# through `raftmq broker --print-config` (which refuses what a broker would); the compose
# file and its broker configs; systemd-analyze verify on the units. The Python tools come
# from the hash-pinned tests/deploy/requirements.txt, in target/venv-deploy.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${CARGO_TARGET_DIR:-target}/debug/raftmq" 2>/dev/null || true)
[ -x "$bin" ] || { echo "deploy-check: build first (cargo build --workspace --bins)" >&2; exit 1; }

venv=target/venv-deploy
req=tests/deploy/requirements.txt
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ "$(cat "$venv/.raftmq-requirements.sha256" 2>/dev/null)" != "$want" ]; then
    echo "deploy-check: installing $(grep -oE '^[a-z][^ ]*' "$req" | xargs) into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --require-hashes --only-binary=:all: -r "$req"
    echo "$want" > "$venv/.raftmq-requirements.sha256"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$venv/bin/hadolint" --failure-threshold info Dockerfile
"$venv/bin/kubernetes-validate" --strict --quiet deploy/kubernetes/*.yaml

# The start script of the broker pods, rendered for every pod of both groups.
"$venv/bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["start-broker.sh"], end="")' \
    deploy/kubernetes/broker-config.yaml > "$work/start-broker.sh"
for group in broker-a broker-b; do
    for pod in 0 1 2; do
        POD_NAME=$group-$pod POD_NAMESPACE=raftmq RAFTMQ_BROKER_GROUP=$group RAFTMQ_GROUP_SIZE=3 \
            RAFTMQ_NAMESRV_NAMES="raftmq-namesrv-0.raftmq-namesrv raftmq-namesrv-1.raftmq-namesrv" \
            RAFTMQ_BIN=$bin RAFTMQ_CONF_DIR=$work sh "$work/start-broker.sh" --print-config > /dev/null \
            || { echo "deploy-check: the config rendered for pod $group-$pod is refused" >&2; exit 1; }
    done
done

# The preStop hook drains the pod's own node: run it with a stand-in binary that prints
# its arguments, then check they are what `raftmq cluster drain` takes.
"$venv/bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["drain-broker.sh"], end="")' \
    deploy/kubernetes/broker-config.yaml > "$work/drain-broker.sh"
printf '#!/bin/sh\nprintf "%%s\\n" "$*"\n' > "$work/echo-args"
chmod +x "$work/echo-args"
drain_args=$(POD_NAME=broker-b-2 POD_NAMESPACE=raftmq RAFTMQ_BROKER_GROUP=broker-b \
    RAFTMQ_NAMESRV_NAMES="raftmq-namesrv-0.raftmq-namesrv raftmq-namesrv-1.raftmq-namesrv" \
    RAFTMQ_BIN=$work/echo-args sh "$work/drain-broker.sh")
want="-n raftmq-namesrv-0.raftmq-namesrv.raftmq.svc.cluster.local:9876,raftmq-namesrv-1.raftmq-namesrv.raftmq.svc.cluster.local:9876 cluster drain broker-b/3 --wait 30"
[ "$drain_args" = "$want" ] || { echo "deploy-check: the preStop hook runs: $drain_args; expected: $want" >&2; exit 1; }
# The real CLI parses those arguments (it then fails to reach the made-up NameServers,
# exit 1; a usage error would be exit 2).
set +e
"$bin" -n 127.0.0.1:1 cluster drain broker-b/3 --wait 30 > /dev/null 2>&1
rc=$?
set -e
[ "$rc" -eq 1 ] || { echo "deploy-check: raftmq cluster drain broker-b/3 --wait 30 exited $rc (2 = the arguments do not parse)" >&2; exit 1; }

"$venv/bin/python" -c 'import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); assert len(d["services"]) == 8, d["services"].keys()' \
    deploy/compose/compose.yaml
for f in deploy/compose/*.toml; do
    "$bin" broker --config "$f" --print-config > /dev/null
done

# systemd-analyze wants the binary where ExecStart says: check copies that name this one.
for unit in deploy/systemd/*.service; do
    name=$(basename "$unit")
    case $name in *@.service) name=${name%@.service}@n1.service ;; esac
    sed "s|/usr/local/bin/raftmq|$bin|" "$unit" > "$work/$name"
done
out=$(cd "$work" && systemd-analyze verify ./*.service 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
    echo "$out" >&2
    echo "deploy-check: systemd-analyze verify complained about the units" >&2
    exit 1
fi
echo "deploy-check: Dockerfile, $(ls deploy/kubernetes/*.yaml | wc -l) manifests, 6 rendered pod configs, the preStop drain, compose, $(ls deploy/systemd/*.service | wc -l) units: ok"
