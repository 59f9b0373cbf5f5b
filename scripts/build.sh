#!/bin/bash
# Build libsandbox out of tree (build/), build and install the guest image,
# and install the library under /usr/local. Idempotent; incremental.
#   scripts/build.sh [--asan]   (--asan: build-asan/, sanitizers, no install)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
log() { printf '[build] %s\n' "$*"; }

if [ -f "$SRC/config.status" ]; then
	echo "the source tree is configured in place; run 'make distclean' first" >&2
	exit 1
fi
if [ ! -x "$SRC/configure" ] || [ "$SRC/configure.ac" -nt "$SRC/configure" ] ||
	[ "$SRC/Makefile.am" -nt "$SRC/Makefile.in" ]; then
	log "autoreconf"
	autoreconf -fi >/dev/null
fi

if [ "${1:-}" = --asan ]; then
	mkdir -p build-asan && cd build-asan
	[ -f Makefile ] || "$SRC/configure" -q --enable-asan CFLAGS="-O1 -g"
	log "building with AddressSanitizer in build-asan/"
	make -j"$(nproc)" >/dev/null
	make -j"$(nproc)" tests/check_unit tests/check_hostile_files tests/check_vm tests/check_files tests/check_net \
		examples/quickstart >/dev/null
	exit 0
fi

mkdir -p build && cd build
[ -f Makefile ] || "$SRC/configure" -q --prefix=/usr/local
log "compiling"
make -j"$(nproc)" >/dev/null
log "guest image"
make image
log "installing to /usr/local"
make install >/dev/null
ldconfig
log "done"
