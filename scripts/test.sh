#!/bin/bash
# The whole test suite, from a fresh Debian 12 machine: host set-up, build,
# guest image, libvirtd for the qemu:///system tests, `make check` (unit,
# ABI, integration with real VMs), the installed library used through
# pkg-config, and one integration suite again under AddressSanitizer.
# Ends with a line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
passed=0
failed=0
step() { # name, command...
	local name=$1
	shift
	echo "=== $name"
	if "$@"; then
		echo "=== $name: PASS"
		passed=$((passed + 1))
	else
		echo "=== $name: FAIL"
		failed=$((failed + 1))
	fi
}
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
	exit $?
}

bash scripts/setup-host.sh || { failed=1; finish; }
bash scripts/build.sh || { echo "build failed"; failed=1; finish; }

start_libvirtd() {
	if ! virsh -c qemu:///system version >/dev/null 2>&1; then
		pgrep -x virtlogd >/dev/null || virtlogd -d
		pgrep -x libvirtd >/dev/null || libvirtd -d
		for _ in $(seq 1 100); do
			virsh -c qemu:///system version >/dev/null 2>&1 && break
			sleep 0.2
		done
	fi
	virsh -c qemu:///system version >/dev/null
}
step "libvirtd for qemu:///system" start_libvirtd
# upstream servers for the network tests (tests/net/README.md)
step "test network" bash tests/net/testnet.sh up

run_check() {
	make -C build check SANDBOX_TEST_STATE_DIR=/var/lib/libsandbox-test
	local rc=$?
	for f in build/tests/*.log build/tests/net/*.log build/test-suite.log; do
		[ -f "$f" ] && { echo "--- $f"; tail -n 60 "$f"; }
	done
	return $rc
}
step "make check" run_check

installed_quickstart() {
	local out
	out=$(mktemp -d)
	PKG_CONFIG_PATH=/usr/local/lib/pkgconfig cc examples/quickstart.c \
		$(PKG_CONFIG_PATH=/usr/local/lib/pkgconfig pkg-config --cflags --libs libsandbox) \
		-o "$out/quickstart" &&
		"$out/quickstart" | tee "$out/log" && grep -q 'sum of squares 1..100 = 338350' "$out/log"
	local rc=$?
	rm -rf "$out"
	return $rc
}
step "installed library via pkg-config (quickstart)" installed_quickstart

# The front ends against the installed library (make check used the build
# tree): the CLI from /usr/local/bin, the Python package pip-installed and
# finding libsandbox.so.1 by itself, the Node addon built against the
# installed header and library. Each runs its README example.
installed_frontends() {
	local out rc=0
	out=$(mktemp -d)
	PATH=/usr/local/bin:$PATH bash examples/cli/quickstart.sh | tee "$out/cli" &&
		grep -q 'sum of squares 1..100 = 338350' "$out/cli" || rc=1
	PIP_ROOT_USER_ACTION=ignore /usr/bin/python3 -m pip install -q --no-build-isolation \
		--no-index --no-deps --target "$out/site" ./bindings/python &&
		PYTHONPATH=$out/site /usr/bin/python3 examples/python/quickstart.py | tee "$out/py" &&
		grep -q 'sum of squares 1..100 = 338350' "$out/py" || rc=1
	mkdir -p "$out/app/node_modules"
	cp -r bindings/node "$out/app/node_modules/libsandbox"
	rm -rf "$out/app/node_modules/libsandbox/build"
	cp examples/node/quickstart.mjs "$out/app/"
	(cd "$out/app/node_modules/libsandbox" && bash "$SRC/scripts/node-gyp.sh" rebuild) &&
		(cd "$out/app" && node quickstart.mjs | tee "$out/node") &&
		grep -q 'sum of squares 1..100 = 338350' "$out/node" || rc=1
	rm -rf "$out"
	return $rc
}
step "installed CLI, Python and Node front ends (README examples)" installed_frontends

asan_run() {
	bash scripts/build.sh --asan || return 1
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
	export LSAN_OPTIONS=suppressions=$SRC/tests/lsan.supp:print_suppressions=0
	export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	(cd build-asan && ./tests/check_unit) &&
		(cd build-asan && ./tests/check_hostile_files) &&
		(cd build-asan && ./examples/quickstart) &&
		(cd build-asan && SANDBOX_TEST_STATE_DIR=/var/lib/libsandbox-test-asan \
			./tests/check_vm) &&
		(cd build-asan && SANDBOX_TEST_STATE_DIR=/var/lib/libsandbox-test-asan \
			./tests/check_files) &&
		(cd build-asan && SANDBOX_TEST_STATE_DIR=/var/lib/libsandbox-test-asan \
			./tests/check_net)
}
step "integration under AddressSanitizer" asan_run

finish
