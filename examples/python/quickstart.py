from libsandbox import Sandbox, SandboxError

code = """
import platform
print(f"hello from Python {platform.python_version()} in {platform.node()}")
print("sum of squares 1..100 =", sum(i * i for i in range(1, 101)))
"""

try:
    # allow_net=[]: no network at all; untrusted code gets only what we give it
    with Sandbox.create(metadata={"owner": "quickstart"}, memory_mb=512,
                        allow_net=[]) as sb:
        print(f"sandbox {sb.id} is up")
        sb.files.write("/work/main.py", code, parents=True)
        result = sb.run(["python3", "/work/main.py"], cwd="/work")
        print(result.stdout, end="")
        print("exit code", result.exit_code)
        for chunk in sb.start("for i in 1 2 3; do echo tick $i; sleep 0.2; done"):
            print(chunk.stream, chunk.data.decode(), end="")
        print("files:", [f.name for f in sb.files.list("/work")])
except SandboxError as e:
    print(f"{e.name}: {e}")
    raise SystemExit(1)
