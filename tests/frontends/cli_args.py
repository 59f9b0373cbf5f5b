"""error_cases.json -> `sandbox run` arguments, one case per line:
NAME, ENV-ASSIGNMENTS and ARGS (shell-quoted) separated by \x1f (not a
whitespace, so an empty field survives `read`). Secret values go into the
environment, as the CLI reads them from there."""
import json
import shlex
import sys

cases = json.load(open(sys.argv[1]))
for name, spec in cases.items():
    if name.startswith("_"):
        continue
    args, env = [], []
    allow = spec.get("allow_net")
    if allow is not None:
        args += ["--no-net"] if not allow else [f"--allow-net={p}" for p in allow]
    for sname, s in spec.get("secrets", {}).items():
        env.append(f"{sname}={s['value']}")
        args.append(f"--secret={sname}@{','.join(s['hosts'])}")
    for guest, v in spec.get("volumes", {}).items():
        args.append(f"--volume={v['host_path']}:{guest}{':ro' if v.get('readonly') else ''}")
    for addr in spec.get("dns_servers", []):
        args.append(f"--dns-server={addr}")
    if "tls_ca_file" in spec:
        args.append(f"--tls-ca-file={spec['tls_ca_file']}")
    for p in spec.get("tls_passthrough", []):
        args.append(f"--tls-passthrough={p}")
    if "memory_mb" in spec:
        args.append(f"--memory={spec['memory_mb']}")
    for k, v in spec.get("env", {}).items():
        args.append(f"--env={k}={v}")
    if "workdir" in spec:
        args.append(f"--workdir={spec['workdir']}")
    print(name, " ".join(shlex.quote(e) for e in env), " ".join(shlex.quote(a) for a in args),
          sep="\x1f")
