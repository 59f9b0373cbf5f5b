#!/bin/bash
# README examples: each file in examples/ that README.md shows must appear
# there verbatim, as a fenced block; the C one is run here (real VM), the
# CLI, Python and Node ones by tests/cli.sh, tests/python.sh, tests/node.sh.
set -uo pipefail
src=$(cd "$top_srcdir" && pwd)
bld=$(cd "$top_builddir" && pwd)
rc=0
for f in examples/cli/quickstart.sh examples/python/quickstart.py examples/node/quickstart.mjs \
	examples/quickstart.c; do
	if /usr/bin/python3 - "$src/README.md" "$src/$f" <<'PY'; then
import sys
readme, example = (open(p).read() for p in sys.argv[1:])
blocks = readme.split("```")
# fenced blocks are the odd pieces; drop the info string line
bodies = [b.split("\n", 1)[1] if "\n" in b else "" for b in blocks[1::2]]
sys.exit(0 if example in bodies else 1)
PY
		echo "ok - README shows $f verbatim"
	else
		echo "not ok - README does not show $f verbatim"
		rc=1
	fi
done
export SANDBOX_STATE_DIR=${SANDBOX_TEST_STATE_DIR:-/var/lib/libsandbox-test}-examples
out=$("$bld/examples/quickstart" 2>&1)
if [ $? = 0 ] && grep -q 'sum of squares 1..100 = 338350' <<<"$out" && grep -qx 'exit code 0' <<<"$out"; then
	echo "ok - examples/quickstart (C) runs as written"
else
	echo "not ok - examples/quickstart (C): $out"
	rc=1
fi
exit $rc
