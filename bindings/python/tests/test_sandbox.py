"""The Python binding against real sandboxes."""
import gc
import json
import os
import subprocess
import sys
import threading
import time

import pytest

import libsandbox
from libsandbox import CommandResult, ErrorCode, OutputChunk, Sandbox, SandboxError

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def test_loaded_from_installed_package():
    expected = os.environ.get("SANDBOX_PY_EXPECT_PREFIX")
    if expected is None:
        pytest.fail("SANDBOX_PY_EXPECT_PREFIX is not set (run through tests/python.sh)")
    # the package pip installed, not the source tree
    assert os.path.realpath(libsandbox.__file__).startswith(os.path.realpath(expected))
    assert libsandbox.version() == "0.1.0"


# ------------------------------------------------------------- commands


def test_run_captures_output_and_exit_code(sb):
    r = sb.run(["python3", "-c", "import sys; print(6 * 7); print('oops', file=sys.stderr); "
                "sys.exit(3)"])
    assert isinstance(r, CommandResult)
    assert (r.stdout, r.stderr, r.exit_code, r.signal, r.timed_out) == ("42\n", "oops\n", 3,
                                                                        0, False)
    assert not r.ok and r.duration_ms > 0


def test_run_string_goes_through_shell_with_env_cwd_stdin(sb):
    r = sb.run("cd .. && pwd; echo \"$GREETING\"; tr a-z A-Z", env={"GREETING": "hi"},
               cwd="/tmp", stdin="shout\n")
    assert r.ok, r
    assert r.stdout == "/\nhi\nSHOUT\n"


def test_binary_output_is_kept_exactly(sb):
    r = sb.run(["python3", "-c", "import sys; sys.stdout.buffer.write(bytes(range(256)))"])
    assert r.stdout_bytes == bytes(range(256))
    assert r.stdout_total == 256


def test_signal_and_timeout(sb):
    r = sb.run(["sh", "-c", "kill -TERM $$"])
    assert (r.exit_code, r.signal) == (-1, 15)
    t = time.monotonic()
    r = sb.run(["sleep", "30"], timeout=0.5)
    assert r.timed_out and time.monotonic() - t < 10


def test_missing_command_raises_with_library_code(sb):
    with pytest.raises(SandboxError) as ei:
        sb.run(["no-such-command-here"])
    assert ei.value.code == ErrorCode.NOTFOUND
    assert ei.value.name == "SANDBOX_E_NOTFOUND"
    assert "no-such-command-here" in str(ei.value)


def test_streaming_delivers_output_before_the_end(sb):
    p = sb.start(["sh", "-c", "echo first; sleep 1.5; echo second >&2"])
    assert p.pid > 0
    t0 = time.monotonic()
    chunks = []
    for c in p:
        assert isinstance(c, OutputChunk)
        chunks.append((c, time.monotonic() - t0))
    r = p.wait()
    assert [c for c, _ in chunks] == [OutputChunk("stdout", b"first\n"),
                                      OutputChunk("stderr", b"second\n")]
    # the first piece arrived well before the command ended
    assert chunks[1][1] - chunks[0][1] > 1.0
    assert r.ok
    p.close()


def test_streaming_stdin_round_trip(sb):
    with sb.start(["cat"], stdin=True) as p:
        p.write("ping\n")
        assert p.read(timeout=30) == OutputChunk("stdout", b"ping\n")
        p.write(b"pong\n")
        assert p.read(timeout=30) == OutputChunk("stdout", b"pong\n")
        p.close_stdin()
        assert p.read(timeout=30) is None
        assert p.wait().ok


def test_process_signal(sb):
    with sb.start(["sleep", "60"]) as p:
        p.signal(9)
        assert p.read(timeout=30) is None
        assert p.wait().signal == 9


def test_output_callbacks_and_their_exceptions(sb):
    out, err = [], []
    r = sb.run("echo a; echo b >&2", on_stdout=out.append, on_stderr=err.append)
    assert (out, err, r.ok) == ([b"a\n"], [b"b\n"], True)

    def boom(_data):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        sb.run("echo x; sleep 30", on_stdout=boom)


def test_several_threads_share_a_sandbox(sb):
    results = [None] * 4

    def work(i):
        results[i] = sb.run(["sh", "-c", f"sleep 0.5; echo {i}"]).stdout

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["0\n", "1\n", "2\n", "3\n"]
    assert time.monotonic() - t0 < 8  # ran concurrently, the GIL released


def test_metadata_id_and_list(sb):
    assert sb.metadata == {"owner": "pytest", "suite": "shared"}
    assert len(sb.id) == 32 and sb.is_running
    sb.ping()
    listed = libsandbox.list_sandboxes()
    assert sb.id in [s.id for s in listed]
    del listed
    gc.collect()
    assert sb.is_running  # dropping listed handles does not kill


# ------------------------------------------------- lifecycle and audit


def test_context_manager_kill_audit(tmp_path):
    log = tmp_path / "audit.jsonl"
    events = []
    with Sandbox.create(metadata={"owner": "agent"}, env={"FROM_CREATE": "yes"},
                        memory_mb=256, timeout=600, audit_log=str(log),
                        on_audit=events.append) as s:
        assert s.run("echo $FROM_CREATE").stdout == "yes\n"
        # kill from another thread while a command runs: the command fails
        threading.Timer(1.0, s.kill).start()
        with pytest.raises(SandboxError) as ei:
            s.run(["sleep", "60"])
        assert ei.value.code == ErrorCode.DEAD
        assert not s.is_running
        s.kill()  # idempotent
        sid = s.id
    with pytest.raises(SandboxError):
        s.run(["true"])
    kinds = [e["event"] for e in events]
    assert kinds[0] == "sandbox.create" and "exec.start" in kinds
    assert kinds[-1] == "sandbox.kill"
    assert all(e["sandbox"] == sid and e["metadata"] == {"owner": "agent"} for e in events)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [e["event"] for e in lines] == kinds


def _qemu_running(sid):
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return any("qemu" in l and sid in l for l in out.splitlines())


def test_finalizer_kills_an_unreferenced_sandbox():
    s = Sandbox.create()
    sid = s.id
    assert _qemu_running(sid)
    del s
    gc.collect()
    assert sid not in [x.id for x in libsandbox.list_sandboxes()]
    deadline = time.monotonic() + 15
    while _qemu_running(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _qemu_running(sid)


# ---------------------------------------------------------------- errors


def _kwargs(spec):
    return dict(spec)  # the neutral spec is already in Python's shape


def test_same_errors_as_the_c_library(error_reference):
    with open(os.path.join(TOP, "tests", "frontends", "error_cases.json")) as f:
        cases = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    assert set(cases) == set(error_reference)
    for name, spec in cases.items():
        with pytest.raises(SandboxError) as ei:
            Sandbox.create(**_kwargs(spec))
        code, message = error_reference[name]
        assert (int(ei.value.code), ei.value.message) == (code, message), name
        assert str(ei.value) == message


def test_python_type_mistakes():
    with pytest.raises(TypeError):
        Sandbox.create(allow_net="example.com")
    with pytest.raises(TypeError):
        Sandbox.create(metadata=[("a", "b")])
    with pytest.raises(TypeError):
        Sandbox.create(dns_servers="192.0.2.53")
    with pytest.raises(ValueError):
        Sandbox.create(memory_mb=-1)
    with pytest.raises(TypeError):
        Sandbox.create(secrets={"T": {"value": "v", "hosts": ["h"], "nope": 1}})


# ------------------------------------------------------------- README


def test_readme_example_runs_as_written():
    example = os.path.join(TOP, "examples", "python", "quickstart.py")
    # a state dir serves one process at a time, and this one holds ours
    env = dict(os.environ, SANDBOX_STATE_DIR=os.environ["SANDBOX_STATE_DIR"] + "-example")
    r = subprocess.run([sys.executable, example], capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert "sum of squares 1..100 = 338350" in r.stdout
    assert "exit code 0" in r.stdout
    assert "files: ['main.py']" in r.stdout


def test_sandboxes_still_running_at_exit_are_killed():
    script = "from libsandbox import Sandbox\nsb = Sandbox.create()\nprint(sb.id)\n"
    env = dict(os.environ, SANDBOX_STATE_DIR=os.environ["SANDBOX_STATE_DIR"] + "-exit")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    assert len(sid) == 32
    assert not _qemu_running(sid)
