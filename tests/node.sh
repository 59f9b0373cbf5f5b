#!/bin/bash
# The Node binding's tests (bindings/node/test, node --test, real VMs).
# Builds the N-API addon with node-gyp out of tree, against the Node
# headers already on the machine (scripts/node-gyp.sh: --nodedir, never a
# download) and the library in this build tree. A missing tool is a
# failure, never a skip.
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
src=$(cd "$top_srcdir" && pwd)
bld=$(cd "$top_builddir" && pwd)

# a copy with a name of its own: never the sources, even in an in-tree build
out=$bld/bindings/node-build
rm -rf "$out"
mkdir -p "$out"
cp -r "$src/bindings/node/." "$out/"
rm -rf "$out/build" "$out/node_modules"
(
	cd "$out"
	SANDBOX_CFLAGS="-I$src/include" SANDBOX_LIBS="-L$bld/.libs -lsandbox" \
		bash "$src/scripts/node-gyp.sh" rebuild
) || fail "node-gyp build of bindings/node failed"

work=$(mktemp -d "${TMPDIR:-/tmp}/sbx-node.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$bld/tests/frontends/error_reference" >"$work/errors.tsv" ||
	fail "tests/frontends/error_reference failed"

export LD_LIBRARY_PATH=$bld/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export SANDBOX_SOURCE_DIR=$src
export SANDBOX_ERROR_REFERENCE=$work/errors.tsv
# its own state dir: one process per state dir, and make -j may run the
# other VM suites at the same time
export SANDBOX_STATE_DIR=${SANDBOX_TEST_STATE_DIR:-/var/lib/libsandbox-test}-node
cd "$out"
exec node --expose-gc --test test/sandbox.test.js
