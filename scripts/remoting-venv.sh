#!/usr/bin/env bash
# Creates the Python venv that the remoting compatibility tests drive the real Apache RocketMQ
# C++ client through (PyPI `rocketmq==0.4.4`, see tests/remoting/rmq.py), and installs exactly the
# hash-pinned tests/remoting/requirements.txt into it.
#
#   scripts/remoting-venv.sh            # create/update; silent when already up to date
#   scripts/remoting-venv.sh --python   # same, then print the venv's python path on stdout
#
# The venv lives at ${RAFTMQ_VENV:-target/venv-rocketmq} (a relative path is taken from the repo
# root) and is built with the `python3` on PATH. A stamp file inside it holds the sha256 of the
# requirements and the interpreter version; when both match and `import rocketmq.client` works,
# the script does nothing. Missing system pieces (python3, its venv module, a shared library
# that librocketmq.so needs) are installed with apt-get when run as root; otherwise the exact
# command is printed and the script fails.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
requirements="$repo_root/tests/remoting/requirements.txt"
venv=${RAFTMQ_VENV:-target/venv-rocketmq}
case "$venv" in
    /*) ;;
    *) venv="$repo_root/$venv" ;;
esac
stamp="$venv/.raftmq-requirements.sha256"

print_python=0
for arg in "$@"; do
    case "$arg" in
        --python) print_python=1 ;;
        -h | --help)
            # The comment block at the top of this file is the help text.
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        *)
            echo "error: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

log() { echo "remoting-venv: $*" >&2; }

# Installs Debian packages when root, else prints the command and fails.
apt_install() {
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing system packages: $*"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "$@" >/dev/null
    else
        log "error: missing system packages: $*"
        log "run: sudo apt-get install -y $*"
        exit 1
    fi
}

# Writes "<requirements sha256> <python version>" for the stamp comparison.
want_stamp() {
    local py=$1
    printf '%s %s\n' "$(sha256sum "$requirements" | cut -d' ' -f1)" \
        "$("$py" -c 'import platform; print(platform.python_version())')"
}

# The import check runs with a throw-away HOME: the C++ client may create ~/logs/rocketmq-cpp.
import_ok() {
    local home rc=0
    home=$(mktemp -d)
    HOME="$home" "$venv/bin/python" -c 'import rocketmq.client' >/dev/null 2>&1 || rc=$?
    rm -rf "$home"
    return $rc
}

done_quietly() {
    if [ "$print_python" -eq 1 ]; then
        echo "$venv/bin/python"
    fi
    exit 0
}

# Fast path: nothing to do.
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] &&
    [ "$(cat "$stamp")" = "$(want_stamp "$venv/bin/python" 2>/dev/null || true)" ] && import_ok; then
    done_quietly
fi

# Serialise concurrent callers (e.g. several test binaries starting at once).
mkdir -p "$(dirname "$venv")"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv.lock"
    flock 9
    # Another caller may have finished the job while we waited.
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] &&
        [ "$(cat "$stamp")" = "$(want_stamp "$venv/bin/python" 2>/dev/null || true)" ] && import_ok; then
        done_quietly
    fi
fi

if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-venv
fi
python=$(command -v python3)

# Only a directory that really is a venv (has pyvenv.cfg) is ever used or removed.
if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
    log "error: $venv exists and is not a Python venv; remove it or set RAFTMQ_VENV"
    exit 1
fi
# A venv that no longer runs as itself (interpreter moved or upgraded) is rebuilt from scratch.
if [ -e "$venv" ] && [ "$("$venv/bin/python" -c 'import os, sys; print(os.path.realpath(sys.prefix))' 2>/dev/null)" != "$(realpath "$venv")" ]; then
    log "removing broken venv $venv"
    rm -rf "$venv"
fi

if [ ! -x "$venv/bin/python" ]; then
    log "creating venv $venv with $python ($("$python" --version 2>&1))"
    venv_log=$(mktemp)
    if ! "$python" -m venv "$venv" >"$venv_log" 2>&1; then
        # Debian splits venv/ensurepip out of python3 (python3-venv / python3.X-venv).
        rm -rf "$venv"
        pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        if [ "$(readlink -f "$python")" = "$(readlink -f "/usr/bin/python$pyver" 2>/dev/null)" ]; then
            apt_install "python$pyver-venv"
            "$python" -m venv "$venv"
        else
            cat "$venv_log" >&2
            rm -f "$venv_log"
            log "error: $python cannot create a venv and is not Debian's python$pyver"
            exit 1
        fi
    fi
    rm -f "$venv_log"
fi

log "installing $(grep -oE '^[A-Za-z0-9][^ ]*' "$requirements" | xargs) into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --require-hashes --only-binary=:all: -r "$requirements"

# librocketmq.so is loaded with ctypes; a missing system library only shows up at import time
# as an OSError, so check its dependencies explicitly and name the Debian package.
lib=$("$venv/bin/python" - <<'EOF'
import importlib.util, os
spec = importlib.util.find_spec("rocketmq")
print(os.path.join(os.path.dirname(spec.origin), "librocketmq.so"))
EOF
)
if [ ! -f "$lib" ]; then
    log "error: rocketmq installed without librocketmq.so (looked for '$lib')"
    exit 1
fi
missing_pkgs=()
while read -r soname; do
    case "$soname" in
        libstdc++.so.*) missing_pkgs+=(libstdc++6) ;;
        libgcc_s.so.*) missing_pkgs+=(libgcc-s1) ;;
        libz*.so*) missing_pkgs+=(zlib1g) ;;
        *) missing_pkgs+=(libc6) ;; # libc, libm, libdl, libpthread, librt, ld-linux
    esac
done < <(ldd "$lib" | awk '/not found/ {print $1}')
if [ ${#missing_pkgs[@]} -gt 0 ]; then
    mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
    apt_install "${missing_pkgs[@]}"
fi

if ! import_ok; then
    log "error: 'import rocketmq.client' fails in $venv:"
    HOME=$(mktemp -d) "$venv/bin/python" -c 'import rocketmq.client' || true
    exit 1
fi
want_stamp "$venv/bin/python" >"$stamp"
log "ready: $venv/bin/python"
done_quietly
