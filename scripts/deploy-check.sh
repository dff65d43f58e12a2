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
echo "deploy-check: Dockerfile, $(ls deploy/kubernetes/*.yaml | wc -l) manifests, 6 rendered pod configs, compose, $(ls deploy/systemd/*.service | wc -l) units: ok"
