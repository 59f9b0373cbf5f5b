"""libsandbox: run untrusted code in throwaway microVMs.

    from libsandbox import Sandbox

    with Sandbox.create(metadata={"owner": "me"}) as sb:
        r = sb.run(["python3", "-c", "print(6 * 7)"])
        print(r.stdout, r.exit_code)

Pure ctypes over libsandbox.so.1 (found through $SANDBOX_LIBRARY, the
dynamic loader, pkg-config's libdir, then ctypes.util.find_library).
"""
from ._errors import ErrorCode, SandboxError
from ._files import FileInfo, Files
from .sandbox import CommandResult, OutputChunk, Process, Sandbox, list_sandboxes, version

__all__ = [
    "Sandbox",
    "Process",
    "CommandResult",
    "OutputChunk",
    "Files",
    "FileInfo",
    "SandboxError",
    "ErrorCode",
    "list_sandboxes",
    "version",
]
__version__ = "0.1.0"
