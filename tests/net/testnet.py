"""The libsandbox test network, for Python tests (tests/net/README.md).

    import sys; sys.path.insert(0, "<srcdir>/tests/net")
    import testnet
    testnet.require_up()                    # raises when it is down: never skip
    testnet.ENV["TESTNET_API4"]             # every value of tests/net/env.sh
    mark = testnet.log_mark(testnet.ENV["TESTNET_DNS_LOG"])
    ...
    testnet.dns_log_count(mark, "x.notallowed.test", "A")

Standard library only.
"""

import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_env():
    out = subprocess.run(["bash", "-c", '. "$1" && env -0', "-", os.path.join(HERE, "env.sh")],
                         check=True, capture_output=True).stdout.decode()
    return {k: v for k, _, v in (e.partition("=") for e in out.split("\0"))
            if k.startswith("TESTNET_")}


ENV = _load_env()


class TestnetDown(AssertionError):
    pass


def require_up():
    """Raises TestnetDown (an AssertionError: the test fails) unless the
    network is up and answering."""
    r = subprocess.run(["bash", os.path.join(HERE, "testnet.sh"), "status"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise TestnetDown("the libsandbox test network is not up (run tests/net/testnet.sh up "
                          "as root):\n" + r.stdout + r.stderr)


def log_mark(path):
    """Current size of a log: take it before an action."""
    return os.path.getsize(path)


def log_lines(path, mark):
    """Lines written to a log after mark."""
    with open(path, "rb") as f:
        f.seek(mark)
        return f.read().decode("utf-8", "backslashreplace").splitlines()


def dns_log_count(mark, qname, qtype=None):
    """Queries for qname (case-insensitive, exact) that reached the test DNS
    server after mark; qtype "A", "AAAA", ... or None for any."""
    n = 0
    for line in log_lines(ENV["TESTNET_DNS_LOG"], mark):
        f = line.split()
        if len(f) >= 6 and f[4].rstrip(".").lower() == qname.rstrip(".").lower() and \
                (qtype is None or f[5].upper() == qtype.upper()):
            n += 1
    return n


def dns_log_count_suffix(mark, suffix):
    """Queries after mark for any name ending in suffix (e.g. ".notallowed.test")."""
    suffix = suffix.lower()
    return sum(1 for line in log_lines(ENV["TESTNET_DNS_LOG"], mark)
               if len(line.split()) >= 5 and line.split()[4].rstrip(".").lower().endswith(suffix))


def pattern(offset, length):
    """The /bytes/N stream (byte i = i mod 251) from offset."""
    mod = int(ENV["TESTNET_PATTERN_MOD"])
    period = bytes(range(mod))
    start = offset % mod
    reps = (start + length) // mod + 1
    return (period * reps)[start:start + length]
