# Shared by scripts/*-venv.sh (source it; not runnable on its own): build or reuse a Python
# venv from a requirements file, with a stamp file inside the venv so that an up-to-date venv
# is recognised at once.
#
# The sourcing script sets TAG (prefix of its messages) before calling these.

die() { echo "$TAG: $*" >&2; exit 1; }

# Sets PYTHON (python3.11 if present, else python3, unless PYTHON is already set) and checks
# that it is at least 3.10.
venv_pick_python() {
    if [ -z "${PYTHON:-}" ]; then
        if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
    fi
    command -v "$PYTHON" >/dev/null 2>&1 || die "interpreter '$PYTHON' not found"
    "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
        || die "$PYTHON is older than 3.10"
}

# venv_is_current VENV STAMP WANT IMPORTS: true when the venv's python works, the stamp holds
# WANT and the python statement IMPORTS runs.
venv_is_current() {
    local py="$1/bin/python"
    [ -x "$py" ] && [ -f "$2" ] && [ "$(cat "$2")" = "$3" ] && "$py" -c "$4" 2>/dev/null
}

# venv_install VENV STAMP REQUIREMENTS IMPORTS: (re)creates the venv if it is missing or
# broken, installs REQUIREMENTS, checks IMPORTS. The stamp is removed first and written by the
# caller once everything it needs is in place.
venv_install() {
    local venv="$1" stamp="$2" req="$3" imports="$4" py="$1/bin/python"
    [ -f "$req" ] || die "missing $req"
    # A venv whose interpreter is gone or broken cannot be repaired in place.
    if [ -e "$venv" ] && ! "$py" -c 'pass' 2>/dev/null; then
        echo "$TAG: removing broken venv $venv" >&2
        rm -rf "$venv"
    fi
    if [ ! -x "$py" ]; then
        echo "$TAG: creating venv $venv with $PYTHON" >&2
        "$PYTHON" -m venv "$venv" || die "venv creation failed"
    fi
    rm -f "$stamp"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    "$py" -m pip install --quiet --upgrade pip >&2 || die "pip upgrade failed"
    "$py" -m pip install --quiet -r "$req" >&2 || die "pip install -r $req failed"
    "$py" -c "$imports" || die "imports failed after install"
}
