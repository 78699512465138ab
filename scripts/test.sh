#!/usr/bin/env bash
# The project's test command: Rust unit/integration tests, then the
# compatibility suite that drives the server through the official Python
# client `credyt-api`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

# The Kafka tests run against a real Kafka-protocol broker, tansu, installed once into the user's
# cache directory (a few minutes the first time; nothing afterwards).
echo "==> tansu (Kafka-protocol broker for the Kafka tests)"
TANSU_BIN="$(bash scripts/tansu.sh)"
export TANSU_BIN

echo "==> cargo test --workspace --all-targets"
cargo test --workspace --all-targets

# `cargo test` has just built target/debug/drawdown for the root package's integration tests
# (CARGO_BIN_EXE_drawdown); a separate `cargo build` would unify features differently and
# rebuild half the dependency tree for nothing.

# The binary lands in cargo's target dir (honour CARGO_TARGET_DIR if set).
TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
DRAWDOWN_BIN="$TARGET_DIR/debug/drawdown"
if [ ! -x "$DRAWDOWN_BIN" ]; then
    echo "error: $DRAWDOWN_BIN was not built" >&2
    exit 1
fi

VENV="$ROOT/target/compat-venv"
REQS="$ROOT/tests/compat/requirements.txt"
STAMP="$VENV/.requirements.sha256"

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    # A fresh Debian/Ubuntu machine may lack python3 or its venv module: install them once
    # (root with apt-get; only when missing, so later runs skip this).
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "==> apt-get install python3 python3-venv"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
        fi
    fi
    if ! python3 -m venv "$VENV"; then
        rm -rf "$VENV"
        echo "error: python3 could not create a virtual environment (on Debian/Ubuntu the" >&2
        echo "       venv module is the python3-venv package); the compatibility tests need one" >&2
        exit 1
    fi
fi

want_hash="$(sha256sum "$REQS" | cut -d' ' -f1)"
have_hash="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want_hash" != "$have_hash" ]; then
    echo "==> installing tests/compat/requirements.txt"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
    printf '%s\n' "$want_hash" > "$STAMP"
fi

echo "==> pytest tests/compat"
DRAWDOWN_BIN="$DRAWDOWN_BIN" \
    "$VENV/bin/python" -m pytest tests/compat -q
