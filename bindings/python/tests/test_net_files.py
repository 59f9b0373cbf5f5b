"""Network policy, secrets, volumes and the files API through the Python
binding, against real sandboxes and the test network (tests/net: DNS at
192.0.2.53, HTTP servers on documentation addresses)."""
import hashlib
import os
import shutil
import stat
import sys
import tempfile

import pytest

from libsandbox import ErrorCode, FileInfo, Sandbox, SandboxError

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "net"))
import testnet  # noqa: E402

SECRET = "s3cret-python-binding"
CURL = "curl -sS --max-time 20 "


@pytest.fixture(scope="module")
def project():
    """A host directory for a read-only volume (the QEMU user must read it)."""
    d = tempfile.mkdtemp(prefix="sbx-py-volume.")
    os.chmod(d, 0o755)
    with open(os.path.join(d, "hello.txt"), "w") as f:
        f.write("from the host\n")
    os.chmod(os.path.join(d, "hello.txt"), 0o644)
    yield d
    shutil.rmtree(d)


@pytest.fixture(scope="module")
def net_sb(project):
    testnet.require_up()  # fails (never skips) when the network is down
    with Sandbox.create(allow_net=["example.test", "api.example.test"],
                        dns_servers=["192.0.2.53"],
                        tls_ca_file=testnet.ENV["TESTNET_CA"],  # the test servers' CA
                        secrets={"TOKEN": {"value": SECRET, "hosts": ["api.example.test"],
                                           "substitute_body": True}},
                        block_misdirected_secrets=True,
                        volumes={"/project": {"host_path": project, "readonly": True}},
                        metadata={"owner": "pytest", "suite": "net"}) as s:
        yield s


# --------------------------------------------------------------- network


def test_allow_net_empty_blocks_everything(sb):
    r = sb.run(CURL + "http://203.0.113.7/echo")
    assert r.exit_code != 0, r
    assert '"method"' not in r.stdout


def test_allowed_host_is_reached_through_the_dns_servers_given(net_sb):
    r = net_sb.run(CURL + "http://example.test/echo")
    assert r.ok, r
    assert '"path": "/echo"' in r.stdout


def test_host_not_on_the_list_is_blocked(net_sb):
    r = net_sb.run(CURL + "http://other.test/echo")
    assert r.exit_code != 0, r
    assert '"path"' not in r.stdout


def test_set_allow_net_updates_the_running_sandbox(net_sb):
    try:
        net_sb.set_allow_net([])
        r = net_sb.run(CURL + "http://example.test/echo")
        assert r.exit_code != 0, r
        net_sb.set_allow_net(["other.test"])
        assert net_sb.run(CURL + "http://other.test/echo").ok
        assert net_sb.run(CURL + "http://example.test/echo").exit_code != 0
        # a malformed pattern: the library's error, the old list stays
        with pytest.raises(SandboxError) as ei:
            net_sb.set_allow_net(["bad pattern!"])
        assert ei.value.code == ErrorCode.INVAL and "bad pattern!" in ei.value.message
        assert net_sb.run(CURL + "http://other.test/echo").ok
        with pytest.raises(TypeError):
            net_sb.set_allow_net("example.test")
    finally:
        net_sb.set_allow_net(["example.test", "api.example.test"])
    assert net_sb.run(CURL + "http://example.test/echo").ok


# --------------------------------------------------------------- secrets


def test_the_guest_sees_only_a_placeholder(net_sb):
    r = net_sb.run('echo "$TOKEN"; cat /proc/self/environ | tr "\\0" "\\n" | grep TOKEN')
    assert r.ok, r
    lines = r.stdout.splitlines()
    assert lines[0].startswith("SBX_PH_TOKEN_") and len(lines[0]) == len("SBX_PH_TOKEN_") + 32
    assert SECRET not in r.stdout


def test_the_value_reaches_the_allowed_host_in_the_body(net_sb):
    # substitute_body: the server hashes the body it received
    r = net_sb.run(CURL + '--data-binary "$TOKEN" http://api.example.test/echo')
    assert r.ok, r
    assert hashlib.sha256(SECRET.encode()).hexdigest() in r.stdout
    assert SECRET not in r.stdout  # echoed values come back as the placeholder


def test_the_value_reaches_the_allowed_host_over_https(net_sb):
    # upstream TLS verified against tls_ca_file (the test network's CA)
    r = net_sb.run(CURL + '--data-binary "$TOKEN" https://api.example.test/echo')
    assert r.ok, r
    assert hashlib.sha256(SECRET.encode()).hexdigest() in r.stdout
    assert '"tls": true' in r.stdout


def test_placeholder_to_another_host_is_blocked(net_sb):
    # block_misdirected_secrets: example.test is allowed, but not for TOKEN
    r = net_sb.run(CURL + '-o /dev/null -w "%{http_code}" -H "X-Token: $TOKEN" '
                   "http://example.test/echo")
    assert r.stdout == "403", r  # refused by the proxy, nothing sent upstream
    assert net_sb.run(CURL + "-o /dev/null http://example.test/echo").ok


# --------------------------------------------------------------- volumes


def test_read_only_volume(net_sb):
    assert net_sb.files.read_text("/project/hello.txt") == "from the host\n"
    r = net_sb.run("echo x > /project/new.txt")
    assert r.exit_code != 0
    with pytest.raises(SandboxError) as ei:
        net_sb.files.write("/project/new2.txt", "x")
    assert ei.value.code in (ErrorCode.PERM, ErrorCode.IO), ei.value


# ----------------------------------------------------------------- files


def test_files_round_trip(sb):
    f = sb.files
    f.mkdir("/tmp/pyfiles/sub", parents=True)
    f.write("/tmp/pyfiles/a.bin", bytes(range(256)) * 3, mode=0o600)
    f.write("/tmp/pyfiles/sub/b.txt", "héllo\n")
    assert f.read("/tmp/pyfiles/a.bin") == bytes(range(256)) * 3
    assert f.read_text("/tmp/pyfiles/sub/b.txt") == "héllo\n"
    st = f.stat("/tmp/pyfiles/a.bin")
    assert isinstance(st, FileInfo)
    assert (st.type, st.size, st.mode, st.is_file) == ("file", 768, 0o600, True)
    assert [(e.name, e.type) for e in f.list("/tmp/pyfiles")] == [("a.bin", "file"),
                                                                  ("sub", "directory")]
    assert sb.run("cat /tmp/pyfiles/sub/b.txt").stdout == "héllo\n"
    with pytest.raises(SandboxError) as ei:
        f.read("/tmp/pyfiles/a.bin", max_size=100)
    assert ei.value.code == ErrorCode.TOOBIG
    with pytest.raises(SandboxError) as ei:
        f.remove("/tmp/pyfiles")
    assert ei.value.code == ErrorCode.NOTEMPTY
    f.remove("/tmp/pyfiles/a.bin")
    assert not f.exists("/tmp/pyfiles/a.bin")
    f.remove("/tmp/pyfiles", recursive=True)
    with pytest.raises(SandboxError) as ei:
        f.stat("/tmp/pyfiles")
    assert ei.value.code == ErrorCode.NOTFOUND


def test_files_upload_download_tree(sb, tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "top.txt").write_text("top\n")
    (src / "d" / "deep.bin").write_bytes(os.urandom(100000))
    os.symlink("top.txt", src / "link")
    sb.files.upload(src, "/tmp/pytree/in", parents=True)
    assert sb.run("cat /tmp/pytree/in/top.txt; readlink /tmp/pytree/in/link").stdout == \
        "top\ntop.txt\n"
    assert sb.files.stat("/tmp/pytree/in/link", follow_symlinks=False).link_target == "top.txt"
    sb.run("echo made-inside > /tmp/pytree/in/d/inside.txt")
    out = tmp_path / "out"
    sb.files.download("/tmp/pytree/in", out)
    assert (out / "top.txt").read_text() == "top\n"
    assert (out / "d" / "deep.bin").read_bytes() == (src / "d" / "deep.bin").read_bytes()
    assert (out / "d" / "inside.txt").read_text() == "made-inside\n"
    assert stat.S_ISLNK(os.lstat(out / "link").st_mode) and os.readlink(out / "link") == "top.txt"
    with pytest.raises(SandboxError) as ei:  # the destination must not exist
        sb.files.download("/tmp/pytree/in", out)
    assert ei.value.code == ErrorCode.EXISTS
    sb.files.remove("/tmp/pytree", recursive=True)
