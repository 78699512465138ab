#!/usr/bin/env bash
# Installs tansu, the Kafka-compatible broker the Kafka tests start (eventlog::testing), into
# ${XDG_CACHE_HOME:-$HOME/.cache}/drawdown/tansu unless it is there already, and prints the
# binary's path. Idempotent: a second run only prints the path. Building it from source takes
# several minutes once.
set -euo pipefail

TANSU_VERSION="0.6.0"
ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/drawdown/tansu"
BIN="$ROOT/bin/tansu"

# Installed, and at this version (cargo records what it installed in .crates.toml); otherwise
# `cargo install` replaces it.
if [ ! -x "$BIN" ] || ! grep -qF "\"tansu $TANSU_VERSION " "$ROOT/.crates.toml" 2>/dev/null; then
    echo "==> installing tansu $TANSU_VERSION into $ROOT" >&2
    # `dynostore` is the in-memory storage engine (memory://) the tests use. (Installed and
    # verified this way, without --locked, on 2026-11-22.)
    cargo install tansu --version "$TANSU_VERSION" --features dynostore --root "$ROOT" >&2
fi
if [ ! -x "$BIN" ]; then
    echo "error: tansu is not at $BIN after installing it" >&2
    exit 1
fi
echo "$BIN"
