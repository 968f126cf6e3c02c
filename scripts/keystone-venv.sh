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

TAG=keystone-venv
# shellcheck source=lib/venv.sh
. "$REPO/scripts/lib/venv.sh"
venv_pick_python
[ -f "$FIXTURE" ] || die "missing $FIXTURE"

want="$(cat "$REQ" "$FIXTURE" | sha256sum | cut -d' ' -f1)"
PY="$VENV/bin/python"

if venv_is_current "$VENV" "$STAMP" "$want" 'import keystone, waitress' \
    && [ -f "$TEMPLATE/keystone.db" ]; then
    echo "keystone-venv: up to date ($VENV)" >&2
    echo "$PY"
    exit 0
fi

venv_install "$VENV" "$STAMP" "$REQ" 'import keystone, waitress'

echo "keystone-venv: preparing Keystone state (db_sync, fernet keys, bootstrap)" >&2
rm -rf "$TEMPLATE"
"$PY" "$FIXTURE" prepare "$TEMPLATE" >&2 || die "keystone prepare failed (see $TEMPLATE/keystone.log)"

echo "$want" > "$STAMP"
echo "keystone-venv: ready ($VENV)" >&2
echo "$PY"
