#!/bin/sh
# The guest agent's protocol tests, run on the host against the real agent
# binary (--connect mode), with an independent Python implementation of the
# framing.
set -eu
exec python3 "$top_srcdir/guest/agent/test_agent.py" "$top_builddir/guest/agent/sandbox-agent"
