#!/bin/bash
# The Python binding's tests (bindings/python/tests, pytest, real VMs).
# The package is installed with pip from the source tree into a scratch
# prefix, offline, and the tests import that copy. Debian's interpreter is
# used (/usr/bin/python3; $PYTHON overrides), whatever python3 comes first
# on PATH. A missing tool is a failure, never a skip.
set -euo pipefail
PY=${PYTHON:-/usr/bin/python3}
src=$(cd "$top_srcdir" && pwd)/bindings/python
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$PY" ] || fail "$PY not found (install python3)"
"$PY" -c 'import pytest' 2>/dev/null || fail "pytest missing for $PY (apt-get install python3-pytest)"
"$PY" -m pip --version >/dev/null 2>&1 || fail "pip missing for $PY (apt-get install python3-pip)"
"$PY" -c 'import setuptools' 2>/dev/null || fail "setuptools missing (apt-get install python3-setuptools)"

work=$(mktemp -d "${TMPDIR:-/tmp}/sbx-python.XXXXXX")
trap 'rm -rf "$work"' EXIT
# a copy: setuptools writes build/ and *.egg-info next to the sources
cp -r "$src" "$work/src"
rm -rf "$work/src/build" "$work/src/src/"*.egg-info
"$PY" -m pip install -q --no-build-isolation --no-index --no-deps --target "$work/site" \
	"$work/src" || fail "pip install of bindings/python failed"

"$(cd "$top_builddir" && pwd)/tests/frontends/error_reference" >"$work/errors.tsv" ||
	fail "tests/frontends/error_reference failed"

export PYTHONPATH=$work/site
export PYTHONDONTWRITEBYTECODE=1 # nothing written into the source tree
export SANDBOX_PY_EXPECT_PREFIX=$work/site
export SANDBOX_ERROR_REFERENCE=$work/errors.tsv
export SANDBOX_LIBRARY=${SANDBOX_LIBRARY:-$(cd "$top_builddir" && pwd)/.libs/libsandbox.so.1}
# its own state dir: a state dir serves one process at a time, and make -j
# may run the other VM suites at the same time
export SANDBOX_STATE_DIR=${SANDBOX_TEST_STATE_DIR:-/var/lib/libsandbox-test}-py
cd "$work"
exec "$PY" -m pytest -p no:cacheprovider -q -rA "$src/tests"
