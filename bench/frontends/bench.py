"""The Python side of bench/frontends/run.py: the same line protocol as
bench_frontends.c, through the ctypes binding."""
import sys
import time

from libsandbox import Sandbox, SandboxError

sb = None
for line in sys.stdin:
    op = line.strip()
    if op == "create":
        if sb is not None:
            sb.close()
        t = time.perf_counter()
        sb = Sandbox.create()
    elif op == "exec":
        t = time.perf_counter()
        assert sb.run(["true"]).exit_code == 0
    elif op == "ping":
        t = time.perf_counter()
        sb.ping()
    elif op == "reject":
        t = time.perf_counter()
        try:
            Sandbox.create(memory_mb=1)
            sys.exit("create with memory_mb=1 succeeded")
        except SandboxError:
            pass
    else:
        break
    print(f"{(time.perf_counter() - t) * 1e3:.3f}", flush=True)
if sb is not None:
    sb.close()
