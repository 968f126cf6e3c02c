#!/usr/bin/env bash
# Create (or reuse) the Python venv used by the client-compatibility tests in
# loadtest/compat/. Idempotent: when the venv exists and was built from the
# current loadtest/compat/requirements.txt (sha256 kept in a stamp file inside
# the venv), it returns at once.
#
#   scripts/compat-venv.sh [VENV_DIR]      # default: $REPO/.venv-compat
#
# Env: PYTHON  interpreter to build the venv with (default: python3.11 if
#              present, else python3; must be >= 3.10).
# The last line printed on stdout is the venv's python path.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv-compat}"
REQ="$REPO/loadtest/compat/requirements.txt"
STAMP="$VENV/.glint-compat-stamp"

TAG=compat-venv
# shellcheck source=lib/venv.sh
. "$REPO/scripts/lib/venv.sh"
venv_pick_python

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
PY="$VENV/bin/python"

if venv_is_current "$VENV" "$STAMP" "$want" 'import glanceclient, openstack' \
    && [ -x "$VENV/bin/openstack" ]; then
    echo "compat-venv: up to date ($VENV)" >&2
    echo "$PY"
    exit 0
fi

venv_install "$VENV" "$STAMP" "$REQ" 'import glanceclient, openstack, openstackclient'
[ -x "$VENV/bin/openstack" ] || die "$VENV/bin/openstack missing after install"

echo "$want" > "$STAMP"
echo "compat-venv: ready ($VENV)" >&2
echo "$PY"
