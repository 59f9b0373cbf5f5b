#!/bin/bash
# The main job: set the host up, build and install libsandbox and its guest
# image, then compile examples/quickstart.c against the installed library
# (pkg-config) and run it: a real microVM running real Python.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
bash scripts/build.sh
export PKG_CONFIG_PATH=/usr/local/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc examples/quickstart.c $(pkg-config --cflags --libs libsandbox) -o "$out/quickstart"
echo "[quickstart] running examples/quickstart"
"$out/quickstart"
