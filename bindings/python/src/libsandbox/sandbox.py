"""Sandbox, Process and CommandResult: the Python face of libsandbox.

Every call that waits on the VM is a ctypes call into the library, which
releases the GIL while it waits, so other Python threads keep running.
Thread safety follows the library: a Sandbox may be used from several
threads at once (kill() from any thread); one Process is read by one
thread at a time.
"""
from __future__ import annotations

import ctypes
import json
import sys
import weakref
from typing import (Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional,
                    Sequence, Union)

from . import _lib
from ._errors import ErrorCode, SandboxError, raise_for
from ._files import Files
from ._lib import lib
from ._options import Keep, argv_array, build_exec_options, build_options

Command = Union[str, Sequence[str]]
Env = Union[Mapping[str, str], Sequence[str]]


def version() -> str:
    """The loaded library's version, e.g. "0.1.0"."""
    return lib.sandbox_version().decode()


class OutputChunk(NamedTuple):
    """A piece of a command's output: stream is "stdout" or "stderr"."""

    stream: str
    data: bytes


class CommandResult:
    """How a command ended, with its captured output."""

    def __init__(self, handle: ctypes.c_void_p) -> None:
        n = ctypes.c_size_t()
        p = lib.sandbox_result_stdout(handle, ctypes.byref(n))
        self.stdout_bytes: bytes = ctypes.string_at(p, n.value) if p and n.value else b""
        p = lib.sandbox_result_stderr(handle, ctypes.byref(n))
        self.stderr_bytes: bytes = ctypes.string_at(p, n.value) if p and n.value else b""
        #: exit status 0..255, or -1 if the command died of a signal
        self.exit_code: int = lib.sandbox_result_exit_code(handle)
        #: terminating signal, or 0
        self.signal: int = lib.sandbox_result_signal(handle)
        #: the per-command timeout killed it
        self.timed_out: bool = bool(lib.sandbox_result_timed_out(handle))
        self.duration_ms: float = lib.sandbox_result_duration_ms(handle)
        #: bytes written to each stream, captured or not
        self.stdout_total: int = lib.sandbox_result_output_total(handle, _lib.STDOUT)
        self.stderr_total: int = lib.sandbox_result_output_total(handle, _lib.STDERR)

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode(errors="replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.signal

    def __repr__(self) -> str:
        return (f"CommandResult(exit_code={self.exit_code}, signal={self.signal}, "
                f"timed_out={self.timed_out}, stdout={self.stdout!r}, "
                f"stderr={self.stderr!r})")


def _result(handle: ctypes.c_void_p) -> CommandResult:
    try:
        return CommandResult(handle)
    finally:
        lib.sandbox_result_free(handle)


def _free_sandbox(handle: int, _keepalive: Any) -> None:
    # _keepalive: the audit callback, which the library may still call
    # while the sandbox is being killed here
    lib.sandbox_free(handle)


def _free_proc(handle: int) -> None:
    lib.sandbox_proc_free(handle)


class Sandbox:
    """A microVM. Create with :meth:`Sandbox.create`; use as a context
    manager, or call :meth:`kill`. A sandbox nobody references any more is
    killed by its finalizer (and at interpreter exit)."""

    _handle: Optional[int]

    def __init__(self, _handle: int, _keepalive: Any = None, _owner: bool = True) -> None:
        """Internal: use Sandbox.create()."""
        self._handle = _handle
        self._finalizer = weakref.finalize(self, _free_sandbox, _handle, _keepalive)
        self._owner = _owner

    @classmethod
    def create(cls, *, secrets: Optional[Mapping[str, Mapping[str, Any]]] = None,
               allow_net: Optional[Sequence[str]] = None,
               volumes: Optional[Mapping[str, Any]] = None,
               metadata: Optional[Mapping[str, str]] = None, env: Optional[Env] = None,
               memory_mb: Optional[int] = None, vcpus: Optional[int] = None,
               timeout: Optional[int] = None, workdir: Optional[str] = None,
               image: Optional[str] = None, state_dir: Optional[str] = None,
               libvirt_uri: Optional[str] = None, accel: Optional[str] = None,
               audit_log: Optional[str] = None,
               on_audit: Optional[Callable[[Dict[str, Any]], None]] = None,
               boot_timeout: Optional[int] = None,
               dns_servers: Optional[Sequence[str]] = None,
               tls_ca_file: Optional[str] = None,
               tls_passthrough: Optional[Sequence[str]] = None,
               block_misdirected_secrets: bool = False) -> "Sandbox":
        """Boot a sandbox and wait until it is ready.

        secrets: ``{"NAME": {"value": "...", "hosts": ["api.example.com"]}}``
        (optional ``"substitute_body": True``: also in request bodies); the
        guest sees a placeholder, the value goes only to those hosts.
        allow_net: host patterns; None = not restricted, [] = nothing.
        dns_servers: upstream resolvers ("192.0.2.53", "[2001:db8::1]:53");
        None = the host's. tls_ca_file: extra CA (PEM) for upstream TLS.
        tls_passthrough: host patterns tunnelled without interception.
        block_misdirected_secrets: block a request carrying a secret's
        placeholder to a host not on that secret's list.
        volumes: ``{"/guest/path": "/host/dir"}`` or
        ``{"/guest/path": {"host_path": "/host/dir", "readonly": True}}``.
        metadata: key/value pairs carried in audit events.
        env: ``{"K": "V"}`` given to every command. timeout: lifetime in
        seconds. on_audit: called with each audit event (a dict), from a
        library thread. Raises SandboxError with the library's code and
        message; nothing is left behind on failure.
        """
        keep = Keep()
        kw = dict(secrets=secrets, allow_net=allow_net, volumes=volumes, metadata=metadata,
                  env=env, memory_mb=memory_mb, vcpus=vcpus, timeout=timeout,
                  workdir=workdir, image=image, state_dir=state_dir, libvirt_uri=libvirt_uri,
                  accel=accel, audit_log=audit_log, boot_timeout=boot_timeout,
                  dns_servers=dns_servers, tls_ca_file=tls_ca_file,
                  tls_passthrough=tls_passthrough,
                  block_misdirected_secrets=block_misdirected_secrets)
        try:
            opts = build_options(keep, kw)
            audit_fn = None
            if on_audit is not None:
                audit_fn = _lib.AUDIT_FN(_audit_trampoline(on_audit))
                opts.audit_cb = audit_fn
            handle = ctypes.c_void_p()
            raise_for(lib.sandbox_create(ctypes.byref(handle), ctypes.byref(opts), 0))
        finally:
            keep.wipe_secrets()
        return cls(handle.value, audit_fn)

    # ------------------------------------------------------------ state

    def _h(self) -> int:
        if self._handle is None:
            raise SandboxError(ErrorCode.DEAD, "this Sandbox object was closed")
        return self._handle

    @property
    def id(self) -> str:
        """The sandbox id (32 hex characters)."""
        return lib.sandbox_id(self._h()).decode()

    @property
    def is_running(self) -> bool:
        return self._handle is not None and lib.sandbox_is_running(self._handle) == 1

    @property
    def metadata(self) -> Dict[str, str]:
        h = self._h()
        out = {}
        for i in range(lib.sandbox_metadata_count(h)):
            k, v = ctypes.c_char_p(), ctypes.c_char_p()
            raise_for(lib.sandbox_metadata_at(h, i, ctypes.byref(k), ctypes.byref(v)))
            out[(k.value or b"").decode()] = (v.value or b"").decode()
        return out

    @property
    def files(self) -> Files:
        """The files API: ``sb.files.write(path, data)``, ``read``, ``stat``,
        ``list``, ``mkdir``, ``remove``, ``upload``, ``download``."""
        # made on each access: a stored one would be a reference cycle and
        # delay the finalizer that kills an unreferenced sandbox
        return Files(self._h)

    def set_allow_net(self, allow_net: Optional[Sequence[str]]) -> None:
        """Replace the outbound allowlist of the running sandbox: None
        allows everything, [] nothing. New connections and DNS queries
        follow it at once; open connections stay. A malformed pattern
        raises SandboxError (INVAL) and the old list stays."""
        keep = Keep()
        arr = None if allow_net is None else keep.str_array(allow_net, "allow_net")
        raise_for(lib.sandbox_set_allow_net(self._h(), arr, 0))

    def ping(self) -> None:
        """Round trip to the guest agent; raises if the sandbox is dead."""
        raise_for(lib.sandbox_ping(self._h(), 0))

    # --------------------------------------------------------- commands

    def run(self, cmd: Command, *, env: Optional[Env] = None, cwd: Optional[str] = None,
            timeout: Optional[float] = None, stdin: Union[bytes, str, None] = None,
            on_stdout: Optional[Callable[[bytes], Any]] = None,
            on_stderr: Optional[Callable[[bytes], Any]] = None,
            max_capture: Optional[int] = None) -> CommandResult:
        """Run a command and wait for it to end.

        cmd: a list is the argv (argv[0] searched in PATH); a str runs
        through ``/bin/sh -c``. timeout: seconds, then the command is
        killed (``result.timed_out``). With on_stdout/on_stderr the output
        is streamed to them as it comes (on this thread) instead of being
        captured; an exception from them kills the command and is re-raised.
        A command that ran returns whatever its exit status; a command that
        does not exist raises SandboxError (NOTFOUND).
        """
        keep = Keep()
        argv = argv_array(keep, cmd)
        e = build_exec_options(keep, env, cwd, timeout, stdin, max_capture)
        raised: List[BaseException] = []
        if on_stdout is not None or on_stderr is not None:
            def deliver(stream: int, data: int, n: int, _ud: int) -> int:
                fn = on_stdout if stream == _lib.STDOUT else on_stderr
                if fn is None:
                    return 0
                try:
                    fn(ctypes.string_at(data, n))
                    return 0
                except BaseException as ex:  # noqa: B902 - re-raised below
                    raised.append(ex)
                    return 1

            cb = _lib.OUTPUT_FN(deliver)
            keep.objects.append(cb)
            e.on_output = cb
        res = ctypes.c_void_p()
        rc = lib.sandbox_exec(self._h(), argv, ctypes.byref(e), ctypes.byref(res), 0)
        if raised:
            if res.value:
                lib.sandbox_result_free(res)
            raise raised[0]
        raise_for(rc)
        return _result(res)

    def start(self, cmd: Command, *, env: Optional[Env] = None, cwd: Optional[str] = None,
              timeout: Optional[float] = None, stdin: bool = False) -> "Process":
        """Start a command and return at once: iterate the Process for its
        output as it comes, write to it if stdin=True, then wait()."""
        keep = Keep()
        argv = argv_array(keep, cmd)
        e = build_exec_options(keep, env, cwd, timeout, None, None)
        p = ctypes.c_void_p()
        raise_for(lib.sandbox_proc_start(self._h(), argv, ctypes.byref(e), ctypes.byref(p),
                                         _lib.PROC_STDIN if stdin else 0))
        return Process(p.value, self)

    # --------------------------------------------------------- lifetime

    def kill(self) -> None:
        """Destroy the VM and delete its disk. Idempotent; callable from any
        thread, also while other threads use the sandbox."""
        if self._handle is not None:
            raise_for(lib.sandbox_kill(self._handle, 0))

    def close(self) -> None:
        """Kill (if this object created it) and release the handle."""
        if self._handle is None:
            return
        if self._owner:
            self.kill()
        self._handle = None
        self._finalizer()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._handle is None:
            return "<Sandbox closed>"
        return f"<Sandbox {self.id} {'running' if self.is_running else 'dead'}>"


def _audit_trampoline(fn: Callable[[Dict[str, Any]], None]) -> Callable[[bytes, int], None]:
    def call(js: bytes, _ud: int) -> None:
        try:
            fn(json.loads(js))
        except BaseException:  # a library thread: nowhere to raise to
            sys.excepthook(*sys.exc_info())
    return call


class Process:
    """A running command (from :meth:`Sandbox.start`). Iterating yields
    :class:`OutputChunk` until the command has ended and all its output
    has been read; then :meth:`wait` gives the result."""

    def __init__(self, handle: int, sandbox: Sandbox) -> None:
        self._handle: Optional[int] = handle
        self._sandbox = sandbox  # keeps the Python object alive while we run
        self._finalizer = weakref.finalize(self, _free_proc, handle)
        self._buf = ctypes.create_string_buffer(65536)
        self._ended = False

    def _h(self) -> int:
        if self._handle is None:
            raise SandboxError(ErrorCode.DEAD, "this Process object was closed")
        return self._handle

    @property
    def pid(self) -> int:
        """The command's pid in the guest."""
        return lib.sandbox_proc_pid(self._h())

    def read(self, timeout: Optional[float] = None) -> Optional[OutputChunk]:
        """The next piece of output, or None when the command has ended and
        everything has been read. timeout (seconds) raises SandboxError
        (TIMEOUT) when nothing came."""
        if self._ended:
            return None
        stream = ctypes.c_int()
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        n = lib.sandbox_proc_read(self._h(), ctypes.byref(stream), self._buf,
                                  ctypes.sizeof(self._buf), ms, 0)
        raise_for(n)
        if n == 0:
            self._ended = True
            return None
        name = "stderr" if stream.value == _lib.STDERR else "stdout"
        return OutputChunk(name, self._buf.raw[:n])

    def __iter__(self) -> Iterator[OutputChunk]:
        while True:
            chunk = self.read()
            if chunk is None:
                return
            yield chunk

    def write(self, data: Union[bytes, str]) -> None:
        """Write to the command's stdin (started with stdin=True); blocks
        while the guest has no room."""
        b = data.encode() if isinstance(data, str) else bytes(data)
        raise_for(lib.sandbox_proc_write(self._h(), b, len(b), 0))

    def close_stdin(self) -> None:
        raise_for(lib.sandbox_proc_close_stdin(self._h(), 0))

    def signal(self, signo: int) -> None:
        """Send a signal (1..64) to the command's process group."""
        raise_for(lib.sandbox_proc_signal(self._h(), signo, 0))

    def wait(self, timeout: Optional[float] = None) -> CommandResult:
        """Wait for the end. Output not read yet is discarded, so iterate
        first if you want it."""
        res = ctypes.c_void_p()
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        raise_for(lib.sandbox_proc_wait(self._h(), ms, ctypes.byref(res), 0))
        return _result(res)

    def close(self) -> None:
        """Release the command (killed if still running)."""
        if self._handle is not None:
            self._handle = None
            self._finalizer()

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def list_sandboxes() -> List[Sandbox]:
    """This process's running sandboxes, as new handles (dropping them does
    not kill the sandboxes)."""
    arr = ctypes.POINTER(ctypes.c_void_p)()
    n = ctypes.c_size_t()
    raise_for(lib.sandbox_list(ctypes.byref(arr), ctypes.byref(n), 0))
    try:
        # each reference becomes its own Sandbox; the array alone is freed
        handles = [arr[i] for i in range(n.value)]
    finally:
        lib.sandbox_list_free(arr, 0)
    return [Sandbox(h, None, _owner=False) for h in handles]
