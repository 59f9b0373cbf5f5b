"""Shared fixtures: one sandbox for the tests that do not need their own
(each boot costs seconds under TCG). The library, image and state dir come
from the environment (tests/python.sh sets SANDBOX_LIBRARY, SANDBOX_IMAGE,
SANDBOX_STATE_DIR)."""
import os

import pytest

from libsandbox import Sandbox


@pytest.fixture(scope="session")
def sb():
    # allow_net=[]: no outbound traffic at all (test_net_files.py checks it)
    with Sandbox.create(metadata={"owner": "pytest", "suite": "shared"}, allow_net=[]) as s:
        yield s


@pytest.fixture(scope="session")
def error_reference():
    """name -> (code, message) from the C API (tests/frontends/error_reference)."""
    path = os.environ.get("SANDBOX_ERROR_REFERENCE")
    if not path:
        pytest.fail("SANDBOX_ERROR_REFERENCE is not set (run through tests/python.sh)")
    ref = {}
    with open(path) as f:
        for line in f:
            name, code, message = line.rstrip("\n").split("\t", 2)
            ref[name] = (int(code), message)
    return ref
