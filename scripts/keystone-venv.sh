#!/usr/bin/env bash
# Create (or reuse) the venv with the real OpenStack Keystone used by the Keystone tests
# (glint/tests/keystone_*.rs), and a prepared Keystone state in it (SQLite database after
# db_sync + bootstrap, fernet and credential keys: $VENV/keystone-template), which each test
# binary copies and serves on a free loopback port (loadtest/keystone/keystone_fixture.py).
# Idempotent: when the venv was built from the current loadtest/keystone/requirements.txt and
# keystone_fixture.py (sha256 kept in a stamp file inside the venv), it returns at once.
#
#   scripts/keystone-venv.sh [VENV_DIR]      # default: $REPO/.venv-keystone
#
# Env: PYTHON  interpreter to build the venv with (default: python3.11 if present, else
#              python3; must be >= 3.10).
# The last line printed on stdout is the venv's python path.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv-keystone}"
REQ="$REPO/loadtest/keystone/requirements.txt"
FIXTURE="$REPO/loadtest/keystone/keystone_fixture.py"
STAMP="$VENV/.glint-keystone-stamp"
TEMPLATE="$VENV/keystone-template"

die() { echo "keystone-venv: $*" >&2; exit 1; }

[ -f "$REQ" ] || die "missing $REQ"

if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "interpreter '$PYTHON' not found"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$PYTHON is older than 3.10"

want="$(cat "$REQ" "$FIXTURE" | sha256sum | cut -d' ' -f1)"
PY="$VENV/bin/python"

if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && [ -f "$TEMPLATE/keystone.db" ] && "$PY" -c 'import keystone, waitress' 2>/dev/null; then
    echo "keystone-venv: up to date ($VENV)" >&2
    echo "$PY"
    exit 0
fi

if [ -e "$VENV" ] && ! "$PY" -c 'pass' 2>/dev/null; then
    echo "keystone-venv: removing broken venv $VENV" >&2
    rm -rf "$VENV"
fi

if [ ! -x "$PY" ]; then
    echo "keystone-venv: creating venv $VENV with $PYTHON" >&2
    "$PYTHON" -m venv "$VENV" || die "venv creation failed"
fi

rm -f "$STAMP"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$PY" -m pip install --quiet --upgrade pip >&2 || die "pip upgrade failed"
"$PY" -m pip install --quiet -r "$REQ" >&2 || die "pip install -r $REQ failed"
"$PY" -c 'import keystone, waitress' || die "imports failed after install"

echo "keystone-venv: preparing Keystone state (db_sync, fernet keys, bootstrap)" >&2
rm -rf "$TEMPLATE"
"$PY" "$FIXTURE" prepare "$TEMPLATE" >&2 || die "keystone prepare failed (see $TEMPLATE/keystone.log)"

echo "$want" > "$STAMP"
echo "keystone-venv: ready ($VENV)" >&2
echo "$PY"
