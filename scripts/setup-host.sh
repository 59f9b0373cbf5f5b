#!/bin/bash
# Prepare a Debian 12 host for building and running libsandbox: Debian
# packages, the libvirt QEMU user, /dev/kvm permissions. Idempotent and
# quiet when there is nothing to do. Must run as root.
set -euo pipefail

PACKAGES=(
	# build
	build-essential autoconf automake libtool pkg-config clang
	libvirt-dev libxml2-dev libssl-dev libc-ares-dev libhttp-parser-dev check
	# run: libvirt's QEMU driver, QEMU, qemu-img, qboot
	libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
	qemu-system-x86 qemu-utils
	# guest image recipe
	mmdebstrap busybox-static e2fsprogs cpio xz-utils kmod
	# tests and benchmarks
	valgrind python3 openssl dnsutils iproute2 procps curl nodejs bc util-linux
	# Python binding: pip-installed from the tree, tested with pytest; the
	# CLI's man page is checked with man
	python3-pip python3-setuptools python3-pytest man-db
)

log() { printf '[setup] %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
	echo "setup-host.sh must run as root (it installs packages)" >&2
	exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
	case "$p" in \#*) continue ;; esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	# libvirt-daemon-system's postinst may try to start services; there is
	# no init system in containers, which is fine.
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/libsandbox-apt.log 2>&1 || {
		tail -20 /tmp/libsandbox-apt.log >&2
		exit 1
	}
fi

# Node.js binding: node, its headers and node-gyp (the addon is built
# against the headers on the machine, never downloaded). A machine without
# node gets Debian's nodejs + libnode-dev + node-gyp. A node installed some
# other way (e.g. a vendor package) is kept if it carries its own headers
# and its npm bundles node-gyp; installing Debian's headers beside it would
# conflict with its files.
node_prefix() { dirname "$(dirname "$(readlink -f "$(command -v node)")")"; }
node_is_debian() { dpkg-query -W -f='${Version}' nodejs 2>/dev/null | grep -qv nodesource; }
node_gyp_found() {
	command -v node-gyp >/dev/null ||
		[ -f "$(npm root -g 2>/dev/null)/npm/node_modules/node-gyp/bin/node-gyp.js" ]
}
node_missing=()
if ! command -v node >/dev/null; then
	node_missing=(nodejs libnode-dev node-gyp)
elif node_is_debian; then
	[ -f /usr/include/node/node_api.h ] || node_missing+=(libnode-dev)
	node_gyp_found || node_missing+=(node-gyp)
else
	[ -f "$(node_prefix)/include/node/node_api.h" ] || [ -f /usr/include/node/node_api.h ] || {
		echo "node $(node --version) at $(command -v node) has no headers (include/node);" \
			"install its development headers or Debian's nodejs" >&2
		exit 1
	}
	node_gyp_found || {
		echo "node-gyp not found for $(command -v node): install npm (it bundles node-gyp)" >&2
		exit 1
	}
fi
if [ ${#node_missing[@]} -gt 0 ]; then
	log "installing ${node_missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${node_missing[@]}" >/tmp/libsandbox-apt.log 2>&1 || {
		tail -20 /tmp/libsandbox-apt.log >&2
		exit 1
	}
fi

# The QEMU user libvirt runs guests as (created by libvirt-daemon-system).
id libvirt-qemu >/dev/null 2>&1 || { echo "user libvirt-qemu missing after install" >&2; exit 1; }

# libvirt re-probes QEMU on every call when its user cannot open /dev/kvm
# (see PLATFORM.md), so give the kvm group access even where TCG is used.
if [ -e /dev/kvm ]; then
	getent group kvm >/dev/null || groupadd -r kvm
	id -nG libvirt-qemu | grep -qw kvm || usermod -aG kvm libvirt-qemu
	chgrp kvm /dev/kvm
	chmod 0660 /dev/kvm
fi
log "host ready"
