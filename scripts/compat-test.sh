#!/usr/bin/env bash
# Run the client-compatibility scripts (loadtest/compat/) against a running
# glint. Creates/reuses the venv with scripts/compat-venv.sh first.
#
#   GLINT_ENDPOINT=http://127.0.0.1:9292 scripts/compat-test.sh [glanceclient sdk osc]
#
# GLINT_SCRATCH defaults to a fresh temp dir (removed on success, kept on
# failure); COMPAT_VENV overrides the venv path.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${GLINT_ENDPOINT:?set GLINT_ENDPOINT, e.g. http://127.0.0.1:9292}"

PY="$("$REPO/scripts/compat-venv.sh" ${COMPAT_VENV:+"$COMPAT_VENV"} | tail -n 1)"

own_scratch=0
if [ -z "${GLINT_SCRATCH:-}" ]; then
    GLINT_SCRATCH="$(mktemp -d -t glint-compat.XXXXXX)"
    own_scratch=1
fi
export GLINT_ENDPOINT GLINT_SCRATCH

rc=0
"$PY" "$REPO/loadtest/compat/run_all.py" "$@" || rc=$?
if [ "$rc" -eq 0 ] && [ "$own_scratch" -eq 1 ]; then
    rm -rf "$GLINT_SCRATCH"
elif [ "$rc" -ne 0 ]; then
    echo "compat: scratch files kept in $GLINT_SCRATCH" >&2
fi
exit "$rc"
