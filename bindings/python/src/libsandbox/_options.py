"""Python arguments -> the library's option structs.

Type mistakes are Python's business (TypeError/ValueError); everything the
library validates (ranges, names, patterns, paths, unsupported options) is
left to it, so a mistake gets the same code and message from every front
end. The C buffers are kept in ``Keep`` until the call has returned.
"""
from __future__ import annotations

import ctypes
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _lib

StrPath = Union[str, "os.PathLike[str]"]

UINT_MAX = 0xFFFFFFFF

ACCEL = {"auto": 0, "kvm": 1, "tcg": 2}


class Keep:
    """Owns the C memory that an options struct points into."""

    def __init__(self) -> None:
        self.objects: List[Any] = []
        self.wipe: List[Any] = []  # buffers holding secret values

    def str(self, s: Optional[StrPath], what: str) -> Optional[bytes]:
        if s is None:
            return None
        if isinstance(s, os.PathLike):
            s = os.fspath(s)
        if not isinstance(s, str):
            raise TypeError(f"{what} must be a str, not {type(s).__name__}")
        b = s.encode()
        if b"\0" in b:
            raise ValueError(f"{what} contains a NUL character")
        self.objects.append(b)
        return b

    def str_array(self, items: Iterable[str], what: str) -> "ctypes.Array[ctypes.c_char_p]":
        """NULL-terminated char* array (an empty iterable gives just the NULL)."""
        if isinstance(items, (str, bytes)):
            raise TypeError(f"{what} must be a list of str, not a single string")
        enc = [self.str(x, f"{what}[{i}]") for i, x in enumerate(items)]
        arr = (ctypes.c_char_p * (len(enc) + 1))(*enc, None)
        self.objects.append(arr)
        return arr

    def secret_value(self, s: str, what: str) -> ctypes.c_char_p:
        if not isinstance(s, str):
            raise TypeError(f"{what} must be a str")
        b = s.encode()
        if b"\0" in b:
            raise ValueError(f"{what} contains a NUL character")
        buf = ctypes.create_string_buffer(b)
        self.wipe.append(buf)
        return ctypes.cast(buf, ctypes.c_char_p)

    def wipe_secrets(self) -> None:
        for buf in self.wipe:
            ctypes.memset(buf, 0, ctypes.sizeof(buf))
        self.wipe.clear()


def uint(v: Optional[int], what: str, scale: float = 1) -> Optional[int]:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{what} must be a number, not {type(v).__name__}")
    n = int(round(v * scale))
    if n < 0 or n > UINT_MAX:
        raise ValueError(f"{what} must be between 0 and {UINT_MAX / scale:g}, got {v}")
    return n


def env_list(env: Union[Mapping[str, str], Sequence[str], None]) -> Optional[List[str]]:
    """{"K": "V"} or ["K=V"] -> ["K=V"] (the library checks the names)."""
    if env is None:
        return None
    if isinstance(env, Mapping):
        return [f"{k}={v}" for k, v in env.items()]
    return list(env)


def _secrets(keep: Keep, secrets: Mapping[str, Mapping[str, Any]], o: _lib.Options) -> None:
    if not isinstance(secrets, Mapping):
        raise TypeError('secrets must be a dict {"NAME": {"value": ..., "hosts": [...]}}')
    arr = (_lib.Secret * max(len(secrets), 1))()
    for i, (name, spec) in enumerate(secrets.items()):
        if not isinstance(spec, Mapping):
            raise TypeError(f'secrets["{name}"] must be a dict with "value" and "hosts"')
        unknown = set(spec) - {"value", "hosts", "substitute_body"}
        if unknown:
            raise TypeError(f'secrets["{name}"]: unknown key(s) {sorted(unknown)}')
        arr[i].name = keep.str(name, "secret name")
        value = spec.get("value")
        if value is not None:
            arr[i].value = keep.secret_value(value, f'secrets["{name}"]["value"]')
        hosts = spec.get("hosts")
        if hosts is not None:
            arr[i].hosts = keep.str_array(hosts, f'secrets["{name}"]["hosts"]')
        arr[i].flags = _lib.SECRET_SUBSTITUTE_BODY if spec.get("substitute_body") else 0
    keep.objects.append(arr)
    o.secrets = arr
    o.secrets_count = len(secrets)


def _volumes(keep: Keep, volumes: Mapping[str, Any], o: _lib.Options) -> None:
    """{"/guest/path": "/host/dir"} or {"/guest/path": {"host_path": ..., "readonly": True}}."""
    if not isinstance(volumes, Mapping):
        raise TypeError('volumes must be a dict {"/guest/path": "/host/dir" or '
                        '{"host_path": ..., "readonly": bool}}')
    arr = (_lib.Volume * max(len(volumes), 1))()
    for i, (guest, spec) in enumerate(volumes.items()):
        readonly = False
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"host_path", "readonly"}
            if unknown:
                raise TypeError(f'volumes["{guest}"]: unknown key(s) {sorted(unknown)}')
            host = spec.get("host_path")
            readonly = bool(spec.get("readonly", False))
        else:
            host = spec
        arr[i].host_path = keep.str(host, f'volumes["{guest}"] host path')
        arr[i].guest_path = keep.str(guest, "volume guest path")
        arr[i].flags = _lib.VOLUME_READONLY if readonly else 0
    keep.objects.append(arr)
    o.volumes = arr
    o.volumes_count = len(volumes)


def _metadata(keep: Keep, metadata: Mapping[str, str], o: _lib.Options) -> None:
    if not isinstance(metadata, Mapping):
        raise TypeError("metadata must be a dict of str to str")
    arr = (_lib.KV * max(len(metadata), 1))()
    for i, (k, v) in enumerate(metadata.items()):
        arr[i].key = keep.str(k, "metadata key")
        arr[i].value = keep.str(v, f'metadata["{k}"]')
    keep.objects.append(arr)
    o.metadata = arr
    o.metadata_count = len(metadata)


def build_options(keep: Keep, kw: Dict[str, Any]) -> _lib.Options:
    o = _lib.Options()
    _errors_raise(_lib.lib.sandbox_options_init(ctypes.byref(o), _lib.OPTIONS_VERSION))
    for field, key, scale in (("memory_mb", "memory_mb", 1), ("vcpus", "vcpus", 1),
                              ("timeout_s", "timeout", 1),
                              ("boot_timeout_s", "boot_timeout", 1)):
        v = uint(kw.get(key), key, scale)
        if v is not None:
            setattr(o, field, v)
    for field in ("image", "workdir", "state_dir", "libvirt_uri", "audit_log"):
        if kw.get(field) is not None:
            setattr(o, field, keep.str(kw[field], field))
    if kw.get("accel") is not None:
        if kw["accel"] not in ACCEL:
            raise ValueError(f"accel must be one of {sorted(ACCEL)}, got {kw['accel']!r}")
        o.accel = ACCEL[kw["accel"]]
    env = env_list(kw.get("env"))
    if env is not None:
        o.env = keep.str_array(env, "env")
    if kw.get("metadata") is not None:
        _metadata(keep, kw["metadata"], o)
    if kw.get("secrets") is not None:
        _secrets(keep, kw["secrets"], o)
    # None: field omitted (NULL); []: a list holding only NULL ("nothing")
    if kw.get("allow_net") is not None:
        o.allow_net = keep.str_array(kw["allow_net"], "allow_net")
    if kw.get("volumes") is not None:
        _volumes(keep, kw["volumes"], o)
    if kw.get("dns_servers") is not None:
        o.dns_servers = keep.str_array(kw["dns_servers"], "dns_servers")
    if kw.get("tls_ca_file") is not None:
        o.tls_ca_file = keep.str(kw["tls_ca_file"], "tls_ca_file")
    if kw.get("tls_passthrough") is not None:
        o.tls_passthrough = keep.str_array(kw["tls_passthrough"], "tls_passthrough")
    if kw.get("block_misdirected_secrets"):
        o.net_flags |= _lib.NET_BLOCK_MISDIRECTED
    return o


def build_exec_options(keep: Keep, env: Any, cwd: Optional[str], timeout: Optional[float],
                       stdin: Union[bytes, str, None],
                       max_capture: Optional[int]) -> _lib.ExecOptions:
    e = _lib.ExecOptions()
    _errors_raise(_lib.lib.sandbox_exec_options_init(ctypes.byref(e), _lib.EXEC_OPTIONS_VERSION))
    envl = env_list(env)
    if envl is not None:
        e.env = keep.str_array(envl, "env")
    if cwd is not None:
        e.cwd = keep.str(cwd, "cwd")
    t = uint(timeout, "timeout", 1000)
    if t is not None:
        e.timeout_ms = t
    if stdin is not None:
        data = stdin.encode() if isinstance(stdin, str) else bytes(stdin)
        buf = ctypes.create_string_buffer(data, len(data) or 1)
        keep.objects.append(buf)
        e.stdin_data = ctypes.cast(buf, ctypes.c_void_p)
        e.stdin_len = len(data)
    if max_capture is not None:
        if max_capture < 0:
            raise ValueError("max_capture must be >= 0")
        e.max_capture = max_capture
    return e


def argv_array(keep: Keep, cmd: Union[str, Sequence[str]]) -> "ctypes.Array[ctypes.c_char_p]":
    """A string runs through /bin/sh -c (as hosted sandbox SDKs do); a list
    is the argv itself."""
    if isinstance(cmd, str):
        cmd = ["/bin/sh", "-c", cmd]
    if not cmd:
        raise ValueError("empty command")
    return keep.str_array(cmd, "cmd")


def _errors_raise(rc: int) -> None:
    from ._errors import raise_for
    raise_for(rc)
