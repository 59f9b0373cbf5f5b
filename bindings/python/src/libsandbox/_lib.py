"""Loading libsandbox.so.1 and declaring its C interface for ctypes.

The structs mirror include/sandbox.h for SANDBOX_OPTIONS_VERSION 2 and
SANDBOX_EXEC_OPTIONS_VERSION 1; the files API and sandbox_set_allow_net
are LIBSANDBOX_1.1 symbols (library 0.2). The library accepts these versions for as
long as it lives (options structs only grow at the end), so a newer
library works with this module unchanged.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
from typing import List

SONAME = "libsandbox.so.1"

OPTIONS_VERSION = 2
EXEC_OPTIONS_VERSION = 1

SECRET_SUBSTITUTE_BODY = 0x1
VOLUME_READONLY = 0x1
NET_BLOCK_MISDIRECTED = 0x1
FILE_PARENTS = 0x1
FILE_RECURSIVE = 0x2
FILE_NOFOLLOW = 0x4
PROC_STDIN = 0x1
STDOUT = 1
STDERR = 2

c_char_p_p = ctypes.POINTER(ctypes.c_char_p)

AUDIT_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)
OUTPUT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                             ctypes.c_void_p)


class KV(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("value", ctypes.c_char_p)]


class Secret(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("value", ctypes.c_char_p),
        ("hosts", c_char_p_p),
        ("flags", ctypes.c_uint),
    ]


class Volume(ctypes.Structure):
    _fields_ = [
        ("host_path", ctypes.c_char_p),
        ("guest_path", ctypes.c_char_p),
        ("flags", ctypes.c_uint),
    ]


class Options(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint),
        ("image", ctypes.c_char_p),
        ("memory_mb", ctypes.c_uint),
        ("vcpus", ctypes.c_uint),
        ("env", c_char_p_p),
        ("workdir", ctypes.c_char_p),
        ("timeout_s", ctypes.c_uint),
        ("metadata", ctypes.POINTER(KV)),
        ("metadata_count", ctypes.c_size_t),
        ("libvirt_uri", ctypes.c_char_p),
        ("state_dir", ctypes.c_char_p),
        ("accel", ctypes.c_int),
        ("audit_log", ctypes.c_char_p),
        ("audit_cb", AUDIT_FN),
        ("audit_userdata", ctypes.c_void_p),
        ("secrets", ctypes.POINTER(Secret)),
        ("secrets_count", ctypes.c_size_t),
        ("allow_net", c_char_p_p),
        ("volumes", ctypes.POINTER(Volume)),
        ("volumes_count", ctypes.c_size_t),
        ("boot_timeout_s", ctypes.c_uint),
        # version 2
        ("dns_servers", c_char_p_p),
        ("tls_ca_file", ctypes.c_char_p),
        ("tls_passthrough", c_char_p_p),
        ("net_flags", ctypes.c_uint),
    ]


class FileInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("type", ctypes.c_int),
        ("mode", ctypes.c_uint),
        ("size", ctypes.c_uint64),
        ("mtime", ctypes.c_int64),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("link_target", ctypes.c_char_p),
    ]


class ExecOptions(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint),
        ("env", c_char_p_p),
        ("cwd", ctypes.c_char_p),
        ("timeout_ms", ctypes.c_uint),
        ("stdin_data", ctypes.c_void_p),
        ("stdin_len", ctypes.c_size_t),
        ("on_output", OUTPUT_FN),
        ("userdata", ctypes.c_void_p),
        ("max_capture", ctypes.c_size_t),
    ]


def _candidates() -> List[str]:
    explicit = os.environ.get("SANDBOX_LIBRARY")
    if explicit:
        return [explicit]  # only that one: a wrong path must not fall back silently
    names = [SONAME]  # the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache)
    try:
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "libsandbox"],
                                capture_output=True, text=True, timeout=10,
                                check=False).stdout.strip()
        if libdir:
            names.append(os.path.join(libdir, SONAME))
    except (OSError, subprocess.SubprocessError):
        pass
    found = ctypes.util.find_library("sandbox")
    if found:
        names.append(found)
    return names


def _load() -> ctypes.CDLL:
    errors = []
    for name in _candidates():
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(f"{name}: {e}")
    raise ImportError("libsandbox: cannot load " + SONAME + " (set SANDBOX_LIBRARY to its "
                      "path, or install the library; pkg-config libsandbox gives its "
                      "libdir): " + "; ".join(errors))


def _declare(lib: ctypes.CDLL) -> None:
    P = ctypes.c_void_p
    I = ctypes.c_int
    U = ctypes.c_uint
    S = ctypes.c_size_t
    table = {
        # name: (restype, argtypes)
        "sandbox_strerror": (ctypes.c_char_p, [I]),
        "sandbox_last_error": (ctypes.c_char_p, []),
        "sandbox_version": (ctypes.c_char_p, []),
        "sandbox_options_init": (I, [ctypes.POINTER(Options), U]),
        "sandbox_exec_options_init": (I, [ctypes.POINTER(ExecOptions), U]),
        "sandbox_create": (I, [ctypes.POINTER(P), ctypes.POINTER(Options), U]),
        "sandbox_kill": (I, [P, U]),
        "sandbox_free": (None, [P]),
        "sandbox_id": (ctypes.c_char_p, [P]),
        "sandbox_is_running": (I, [P]),
        "sandbox_metadata_count": (S, [P]),
        "sandbox_metadata_at": (I, [P, S, c_char_p_p, c_char_p_p]),
        "sandbox_list": (I, [ctypes.POINTER(ctypes.POINTER(P)), ctypes.POINTER(S), U]),
        "sandbox_list_free": (None, [ctypes.POINTER(P), S]),
        "sandbox_ping": (I, [P, U]),
        "sandbox_exec": (I, [P, c_char_p_p, ctypes.POINTER(ExecOptions), ctypes.POINTER(P), U]),
        "sandbox_proc_start": (I, [P, c_char_p_p, ctypes.POINTER(ExecOptions),
                                   ctypes.POINTER(P), U]),
        "sandbox_proc_write": (I, [P, ctypes.c_void_p, S, U]),
        "sandbox_proc_close_stdin": (I, [P, U]),
        "sandbox_proc_read": (I, [P, ctypes.POINTER(I), ctypes.c_void_p, S, I, U]),
        "sandbox_proc_signal": (I, [P, I, U]),
        "sandbox_proc_wait": (I, [P, I, ctypes.POINTER(P), U]),
        "sandbox_proc_pid": (I, [P]),
        "sandbox_proc_free": (None, [P]),
        "sandbox_result_exit_code": (I, [P]),
        "sandbox_result_signal": (I, [P]),
        "sandbox_result_timed_out": (I, [P]),
        "sandbox_result_stdout": (ctypes.c_void_p, [P, ctypes.POINTER(S)]),
        "sandbox_result_stderr": (ctypes.c_void_p, [P, ctypes.POINTER(S)]),
        "sandbox_result_output_total": (ctypes.c_uint64, [P, I]),
        "sandbox_result_duration_ms": (ctypes.c_double, [P]),
        "sandbox_result_free": (None, [P]),
        "sandbox_set_allow_net": (I, [P, c_char_p_p, U]),
        "sandbox_file_write": (I, [P, ctypes.c_char_p, ctypes.c_void_p, S, U, U]),
        "sandbox_file_read": (I, [P, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p),
                                  ctypes.POINTER(S), S, U]),
        "sandbox_buffer_free": (None, [ctypes.c_void_p]),
        "sandbox_file_stat": (I, [P, ctypes.c_char_p, ctypes.POINTER(ctypes.POINTER(FileInfo)),
                                  U]),
        "sandbox_file_list": (I, [P, ctypes.c_char_p, ctypes.POINTER(ctypes.POINTER(FileInfo)),
                                  ctypes.POINTER(S), U]),
        "sandbox_file_info_free": (None, [ctypes.POINTER(FileInfo), S]),
        "sandbox_file_mkdir": (I, [P, ctypes.c_char_p, U, U]),
        "sandbox_file_remove": (I, [P, ctypes.c_char_p, U]),
        "sandbox_file_upload": (I, [P, ctypes.c_char_p, ctypes.c_char_p, U]),
        "sandbox_file_download": (I, [P, ctypes.c_char_p, ctypes.c_char_p, U]),
    }
    for name, (restype, argtypes) in table.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


lib = _load()
_declare(lib)
