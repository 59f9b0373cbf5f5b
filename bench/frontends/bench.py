"""The Python side of bench/frontends/run.py: the same measurements as
bench_frontends.c, through the ctypes binding."""
import json
import sys
import time

from libsandbox import Sandbox

creates, execs = int(sys.argv[1]), int(sys.argv[2])
Sandbox.create().close()  # warm-up
create_ms = []
for i in range(creates):
    t = time.perf_counter()
    sb = Sandbox.create()
    create_ms.append((time.perf_counter() - t) * 1e3)
    if i + 1 < creates:
        sb.close()
exec_ms = []
for _ in range(execs):
    t = time.perf_counter()
    r = sb.run(["true"])
    exec_ms.append((time.perf_counter() - t) * 1e3)
    assert r.exit_code == 0
sb.close()
print(json.dumps({"create_ms": create_ms, "exec_ms": exec_ms}))
