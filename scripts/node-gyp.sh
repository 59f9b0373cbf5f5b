#!/bin/bash
# node-gyp with the Node headers already on this machine (never a download):
# Debian's node-gyp, else the one npm bundles; --nodedir is the prefix of
# the node on PATH if it carries include/node, else /usr (libnode-dev).
#   scripts/node-gyp.sh rebuild    (in bindings/node or a copy of it)
set -euo pipefail
command -v node >/dev/null || { echo "node not found (scripts/setup-host.sh)" >&2; exit 1; }
if command -v node-gyp >/dev/null; then
	GYP=(node-gyp)
else
	js=$(npm root -g 2>/dev/null)/npm/node_modules/node-gyp/bin/node-gyp.js
	[ -f "$js" ] || { echo "node-gyp not found (apt-get install node-gyp)" >&2; exit 1; }
	GYP=(node "$js")
fi
nodedir=${NODE_GYP_NODEDIR:-$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")}
[ -f "$nodedir/include/node/node_api.h" ] || nodedir=/usr
[ -f "$nodedir/include/node/node_api.h" ] ||
	{ echo "Node headers not found in $nodedir/include/node (apt-get install libnode-dev)" >&2; exit 1; }
exec "${GYP[@]}" "$@" --nodedir="$nodedir" --loglevel=warn
