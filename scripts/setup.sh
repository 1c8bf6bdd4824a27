#!/usr/bin/env bash
# Idempotent set-up: .venv with the project and its extras, and the real Fashion-MNIST.
# Each step that is already done prints one line and is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-train,convert,dev}
stamp="$VENV/.edge-classify-installed"
want="$(cat pyproject.toml requirements/lock-x86_64.txt 2>/dev/null | sha256sum | cut -c1-16) extras=$EXTRAS"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
    echo "setup: $VENV is up to date (pyproject.toml and the lock unchanged); skipping install"
else
    echo "setup: installing edge-classify[$EXTRAS] into $VENV"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip 2>/dev/null || true
    log="$VENV/pip-install.log"
    : >"$log"
    # The tooling's exact versions, hash-checked, from the lock (requirements/lock-x86_64.txt, for
    # CPython 3.11 on x86-64 Linux; `make lock` refreshes it, under requirements/lock-constraints.txt); elsewhere the ranges in pyproject.toml.
    lock=requirements/lock-x86_64.txt
    pyver=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    if [ -f "$lock" ] && [ "$(uname -m)" = "x86_64" ] && [ "$pyver" = "3.11" ] && [ "$EXTRAS" = "train,convert,dev" ]; then
        echo "setup: installing the locked versions ($lock, hash-checked)"
        if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --require-hashes --no-deps -r "$lock" \
                >>"$log" 2>&1; then
            tail -n 20 "$log"
            echo "setup: the locked install failed; full log in $log"
            exit 1
        fi
    else
        echo "setup: no lock for Python $pyver on $(uname -m) with extras $EXTRAS; installing within pyproject.toml's ranges"
    fi
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e ".[$EXTRAS]" >>"$log" 2>&1; then
        tail -n 20 "$log"
        echo "setup: pip install failed; full log in $log"
        exit 1
    fi
    "$VENV/bin/python" -c "import edge_runtime, numpy, cv2" || { echo "setup: install failed; see pip output above"; exit 1; }
    echo "$want" > "$stamp"
fi
# The tooling (train/, convert/, benchmarks/) is not installed as top-level modules: the venv finds it
# in this checkout, for `python -m train` from anywhere and for the edge-train/convert/benchmark commands.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD" > "$site/edge-classify-checkout.pth"

if where=$("$VENV/bin/python" -m train.datasets.fashion_mnist 2>/dev/null); then
    echo "setup: Fashion-MNIST found at $where; skipping dataset install"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "setup: installing Fashion-MNIST with apt-get (dataset-fashion-mnist)"
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
    "$VENV/bin/python" -m train.datasets.fashion_mnist
else
    echo "setup: Fashion-MNIST is missing; run: sudo apt-get install dataset-fashion-mnist"
    exit 1
fi
