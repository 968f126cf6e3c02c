#!/usr/bin/env bash
# Prints a directory holding Glance 33's metadata definition files (etc/glance/metadefs/*.json
# of the glance 33.0.0 package), for the tests of `glint manage metadefs load`.
#
#   scripts/glance-metadefs.sh        # downloads once into target/glance-metadefs/, prints the dir
#
# glint does not ship copies of Glance's files: the wheel comes from PyPI at test time (pip
# download, no install), and only its data files are unpacked. Needs python3 with pip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VERSION=33.0.0
DIR="target/glance-metadefs/$VERSION"
OUT="$DIR/metadefs"
if [ ! -s "$OUT/compute-watchdog.json" ]; then
    mkdir -p "$DIR"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$DIR" "glance==$VERSION" >&2
    wheel="$(ls "$DIR"/glance-"$VERSION"-*.whl | head -n 1)"
    rm -rf "$DIR/unpacked" "$OUT"
    python3 - "$wheel" "$DIR/unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if '/etc/glance/metadefs/' in n and n.endswith('.json'):
            z.extract(n, sys.argv[2])
PY
    mv "$DIR"/unpacked/glance-"$VERSION".data/data/etc/glance/metadefs "$OUT"
    rm -rf "$DIR/unpacked"
fi
cd "$OUT" && pwd
