#!/bin/sh
# The guest agent as PID 1 in a real VM (bare QEMU; TCG unless QEMU_ACCEL
# says otherwise): PID-1 duties, and guest networking (nftables redirect,
# transparent TCP relay, DNS stub) exercised with real clients in the guest
# against a host-side stand-in for the proxy (guest/agent/vm_smoke.py).
# Needs the guest image (`make image`, or SANDBOX_IMAGE=DIR); without it
# this is a hard error, not a skip.
set -eu
img=${SANDBOX_IMAGE:-$image_dir}
if [ ! -f "$img/manifest" ]; then
	echo "agent-vm: no guest image in $img (run make image, or set SANDBOX_IMAGE)" >&2
	exit 99
fi
exec python3 "$top_srcdir/guest/agent/vm_smoke.py" "$img"
