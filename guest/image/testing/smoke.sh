#!/bin/bash
# Smoke test of the guest image recipe, independent of the real agent:
# builds testing/fake-agent.c, builds the image with it (using the normal
# build cache) and boots it with the floor benchmark until the fake agent's
# HELLO arrives.
#
#   guest/image/testing/smoke.sh [RUNS]      (default 1; root; needs qemu)
#
# Env: OUT=DIR keeps the image there (default: a temp dir, removed at exit),
#      LIBSANDBOX_IMAGE_CACHE=DIR overrides the build cache.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
RUNS=${1:-1}

tmp=$(mktemp -d)
chmod 0755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
out=${OUT:-$tmp/image}

for p in gcc libc6-dev qemu-system-x86 qemu-utils python3; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null ||
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null; }
	fi
done

gcc -static -O2 -Wall -Wextra -Werror -o "$tmp/fake-agent" "$HERE/fake-agent.c"
"$REPO/guest/image/build.sh" --agent "$tmp/fake-agent" --out "$out"
python3 "$REPO/bench/floor/floor.py" --image "$out" --runs "$RUNS" --warmup 0 --json
echo "image smoke: 1 passed, 0 failed"
