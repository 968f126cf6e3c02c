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

die() { echo "compat-venv: $*" >&2; exit 1; }

[ -f "$REQ" ] || die "missing $REQ"

if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "interpreter '$PYTHON' not found"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$PYTHON is older than 3.10"

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
PY="$VENV/bin/python"

if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && [ -x "$VENV/bin/openstack" ] && "$PY" -c 'import glanceclient, openstack' 2>/dev/null; then
    echo "compat-venv: up to date ($VENV)" >&2
    echo "$PY"
    exit 0
fi

# A venv whose interpreter is gone or broken cannot be repaired in place.
if [ -e "$VENV" ] && ! "$PY" -c 'pass' 2>/dev/null; then
    echo "compat-venv: removing broken venv $VENV" >&2
    rm -rf "$VENV"
fi

if [ ! -x "$PY" ]; then
    echo "compat-venv: creating venv $VENV with $PYTHON" >&2
    "$PYTHON" -m venv "$VENV" || die "venv creation failed"
fi

rm -f "$STAMP"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$PY" -m pip install --quiet --upgrade pip >&2 || die "pip upgrade failed"
"$PY" -m pip install --quiet -r "$REQ" >&2 || die "pip install -r $REQ failed"
"$PY" -c 'import glanceclient, openstack, openstackclient' || die "imports failed after install"
[ -x "$VENV/bin/openstack" ] || die "$VENV/bin/openstack missing after install"

echo "$want" > "$STAMP"
echo "compat-venv: ready ($VENV)" >&2
echo "$PY"
