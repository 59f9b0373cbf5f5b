#!/bin/sh
# The exported symbol list is the ABI: it must equal the committed list.
# A symbol added on purpose goes into exported.sym (and a new version node
# in lib/libsandbox.map); a symbol never disappears.
set -eu
lib="$top_builddir/.libs/libsandbox.so.1"
[ -f "$lib" ] || { echo "FAIL: $lib not built"; exit 1; }
expected="$top_srcdir/tests/abi/exported.sym"
actual=$(mktemp)
trap 'rm -f "$actual"' EXIT
nm -D --defined-only "$lib" | awk '$2 == "T" || $2 == "D" || $2 == "B" { sub(/@.*/, "", $3); print $3 }' |
	grep -v '^LIBSANDBOX_' | LC_ALL=C sort -u >"$actual"
if ! diff -u "$expected" "$actual"; then
	echo "FAIL: exported symbols differ from tests/abi/exported.sym"
	exit 1
fi
soname=$(objdump -p "$lib" | awk '$1 == "SONAME" { print $2 }')
[ "$soname" = "libsandbox.so.1" ] || { echo "FAIL: SONAME is '$soname'"; exit 1; }
if nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^sandbox_' | grep -v '^LIBSANDBOX_' | grep -q .; then
	echo "FAIL: non-sandbox_ symbols exported"
	exit 1
fi
echo "PASS: $(wc -l <"$expected") exported symbols match, SONAME $soname"
