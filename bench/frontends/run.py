"""Front-end overhead benchmark: sandbox create and a command round trip
(`true`) through the C library, the Python binding and the Node binding,
in one run, one after the other on the same machine. Prints JSON with the
samples, the medians and each binding's ratio to C.

  run.py --build DIR --src DIR [--creates N] [--execs M] [--rounds R]

Each round runs the three front ends in turn (one process each), so slow
drift of a shared machine hits them alike; samples of all rounds are
pooled before taking medians."""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def run(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--creates", type=int, default=3)
    ap.add_argument("--execs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    build, src = os.path.abspath(a.build), os.path.abspath(a.src)
    env = dict(os.environ)
    env["SANDBOX_LIBRARY"] = f"{build}/.libs/libsandbox.so.1"
    env["PYTHONPATH"] = f"{src}/bindings/python/src"
    env["LD_LIBRARY_PATH"] = f"{build}/.libs"
    env["SANDBOX_NODE_PACKAGE"] = f"{build}/bindings/node"
    if not os.path.exists(f"{build}/bindings/node/build/Release/sandbox.node"):
        sys.exit("the Node addon is not built (make bench-frontends builds it)")
    fronts = {
        "c": [f"{build}/bench/bench_frontends"],
        "python": [sys.executable, f"{src}/bench/frontends/bench.py"],
        "node": ["node", f"{src}/bench/frontends/bench.js"],
    }
    samples = {k: {"create_ms": [], "exec_ms": []} for k in fronts}
    for _ in range(a.rounds):
        for name, cmd in fronts.items():
            r = run(cmd + [str(a.creates), str(a.execs)], env)
            for key in ("create_ms", "exec_ms"):
                samples[name][key] += r[key]
    med = {k: {key: statistics.median(v[key]) for key in v} for k, v in samples.items()}
    result = {
        "benchmark": "frontends",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                 "node": subprocess.run(["node", "--version"], capture_output=True,
                                        text=True).stdout.strip(),
                 "accel": os.environ.get("SANDBOX_ACCEL", "auto")},
        "params": {"creates_per_round": a.creates, "execs_per_round": a.execs,
                   "rounds": a.rounds, "command": "true"},
        "median_ms": med,
        "ratio_to_c": {k: {key: round(med[k][key] / med["c"][key], 3) for key in med[k]}
                       for k in ("python", "node")},
        "overhead_ms": {k: {key: round(med[k][key] - med["c"][key], 3) for key in med[k]}
                        for k in ("python", "node")},
        "samples_ms": samples,
    }
    print(json.dumps(result, indent=1))


main()
