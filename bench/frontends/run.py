"""Front-end overhead benchmark: sandbox create and a command round trip
(`true`) through the C library, the Python binding and the Node binding,
in one run. Prints JSON with the samples, the medians and each binding's
ratio to C.

  run.py --build DIR --src DIR [--creates N] [--execs M]

Besides create and exec (dominated by the VM), two measures isolate the
front end's own cost: a ping (agent round trip, no guest process) and a
create the library refuses at once (memory_mb=1: options conversion, the
call, the error path).

The three front ends run as three long-lived processes (each with its own
state dir: a state dir serves one process), and the driver interleaves
them operation by operation (C, Python, Node, C, ...), so the noise of a
shared machine hits all three alike. Each process's first create opens
its runtime and is not counted."""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time


class Front:
    def __init__(self, name, cmd, env):
        self.name = name
        self.p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, bufsize=1)

    def op(self, what):
        self.p.stdin.write(what + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            sys.exit(f"{self.name}: the benchmark process died during '{what}'")
        return float(line)

    def close(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.close()
        self.p.wait(timeout=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--creates", type=int, default=6)
    ap.add_argument("--execs", type=int, default=200)
    a = ap.parse_args()
    build, src = os.path.abspath(a.build), os.path.abspath(a.src)
    if not os.path.exists(f"{build}/bindings/node-build/build/Release/sandbox.node"):
        sys.exit("the Node addon is not built (make bench-frontends builds it)")
    base = dict(os.environ)
    base["SANDBOX_LIBRARY"] = f"{build}/.libs/libsandbox.so.1"
    base["PYTHONPATH"] = f"{src}/bindings/python/src"
    base["LD_LIBRARY_PATH"] = f"{build}/.libs"
    base["SANDBOX_NODE_PACKAGE"] = f"{build}/bindings/node-build"
    state = base.get("SANDBOX_STATE_DIR", "/var/lib/libsandbox-bench")
    cmds = {
        "c": [f"{build}/bench/bench_frontends"],
        "python": [sys.executable, f"{src}/bench/frontends/bench.py"],
        "node": ["node", f"{src}/bench/frontends/bench.js"],
    }
    fronts = [Front(n, c, dict(base, SANDBOX_STATE_DIR=f"{state}-{n}")) for n, c in cmds.items()]
    samples = {f.name: {"create_ms": [], "exec_ms": [], "ping_ms": [], "reject_ms": []}
               for f in fronts}
    for f in fronts:
        f.op("create")  # warm-up: opens the runtime
    for i in range(a.creates):
        for f in fronts:
            samples[f.name]["create_ms"].append(f.op("create"))
        for _ in range(a.execs // a.creates):
            for f in fronts:
                samples[f.name]["exec_ms"].append(f.op("exec"))
            for f in fronts:
                samples[f.name]["ping_ms"].append(f.op("ping"))
            for f in fronts:
                samples[f.name]["reject_ms"].append(f.op("reject"))
    for f in fronts:
        f.close()
    med = {k: {key: round(statistics.median(v[key]), 3) for key in v}
           for k, v in samples.items()}
    result = {
        "benchmark": "frontends",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                 "node": subprocess.run(["node", "--version"], capture_output=True,
                                        text=True).stdout.strip(),
                 "accel": os.environ.get("SANDBOX_ACCEL", "auto")},
        "params": {"creates": a.creates, "execs": a.execs, "command": "true",
                   "ping": "sandbox_ping round trip, as many as execs",
                   "reject": "create refused before boot (memory_mb=1), as many as execs",
                   "interleaving": "per operation, c/python/node"},
        "median_ms": med,
        "ratio_to_c": {k: {key: round(med[k][key] / med["c"][key], 3) for key in med[k]}
                       for k in ("python", "node")},
        "overhead_ms": {k: {key: round(med[k][key] - med["c"][key], 3) for key in med[k]}
                        for k in ("python", "node")},
        "samples_ms": samples,
    }
    print(json.dumps(result, indent=1))


main()
