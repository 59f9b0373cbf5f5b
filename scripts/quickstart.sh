#!/bin/bash
# The main job: set the host up, build and install libsandbox, its guest
# image and the `sandbox` command, then run examples/cli/quickstart.sh: a
# `sandbox run` of real Python code in a real microVM.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
bash scripts/build.sh
echo "[quickstart] running examples/cli/quickstart.sh"
PATH=/usr/local/bin:$PATH bash examples/cli/quickstart.sh
