"""The files API: ``sb.files.write/read/stat/list/mkdir/remove/upload/
download`` over the library's sandbox_file_* calls.

Guest paths are used as given (absolute, or relative to "/"). Each call
waits on the VM inside the library with the GIL released, so other Python
threads keep running; a Sandbox's files may be used from several threads
at once (the library's calls are thread-safe).
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, List, Optional, Union

from . import _lib
from ._errors import raise_for
from ._lib import lib
from ._options import Keep, StrPath, uint

if TYPE_CHECKING:
    from .sandbox import Sandbox

_TYPES = {1: "file", 2: "directory", 3: "symlink", 4: "other"}


@dataclass(frozen=True)
class FileInfo:
    """One file's metadata. ``type`` is "file", "directory", "symlink" or
    "other" (device, fifo, socket); ``name`` the entry name in a listing,
    the path for :meth:`Files.stat`."""

    name: str
    type: str
    mode: int
    size: int
    mtime: int
    uid: int
    gid: int
    link_target: Optional[str] = None

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"

    @property
    def is_file(self) -> bool:
        return self.type == "file"


def _info(c: _lib.FileInfo) -> FileInfo:
    return FileInfo(name=(c.name or b"").decode(errors="surrogateescape"),
                    type=_TYPES.get(c.type, "other"), mode=c.mode, size=c.size,
                    mtime=c.mtime, uid=c.uid, gid=c.gid,
                    link_target=(c.link_target.decode(errors="surrogateescape")
                                 if c.link_target is not None else None))


class Files:
    """Files in one sandbox (``sb.files``)."""

    def __init__(self, handle: Callable[[], int]) -> None:
        self._h = handle  # Sandbox._h: raises once the Sandbox is closed

    def write(self, path: StrPath, data: Union[bytes, str], *, mode: int = 0,
              parents: bool = False) -> None:
        """Create or truncate the file and write data (a str is UTF-8);
        mode: permission bits (0: 0644); parents: create missing parent
        directories."""
        keep = Keep()
        b = data.encode() if isinstance(data, str) else bytes(data)
        m = uint(mode, "mode")
        raise_for(lib.sandbox_file_write(self._h(), keep.str(path, "path"), b, len(b), m,
                                         _lib.FILE_PARENTS if parents else 0))

    def read(self, path: StrPath, *, max_size: Optional[int] = None) -> bytes:
        """The whole file. Larger than max_size bytes (default 64 MiB)
        raises SandboxError (TOOBIG)."""
        keep = Keep()
        if max_size is not None and (isinstance(max_size, bool) or max_size <= 0):
            raise ValueError("max_size must be a positive number of bytes")
        data = ctypes.c_void_p()
        n = ctypes.c_size_t()
        raise_for(lib.sandbox_file_read(self._h(), keep.str(path, "path"), ctypes.byref(data),
                                        ctypes.byref(n), max_size or 0, 0))
        try:
            return ctypes.string_at(data, n.value) if data.value and n.value else b""
        finally:
            lib.sandbox_buffer_free(data)

    def read_text(self, path: StrPath, *, encoding: str = "utf-8",
                  max_size: Optional[int] = None) -> str:
        """The whole file, decoded."""
        return self.read(path, max_size=max_size).decode(encoding)

    def stat(self, path: StrPath, *, follow_symlinks: bool = True) -> FileInfo:
        """Metadata of one path (of a symlink itself with
        follow_symlinks=False)."""
        keep = Keep()
        p = ctypes.POINTER(_lib.FileInfo)()
        raise_for(lib.sandbox_file_stat(self._h(), keep.str(path, "path"), ctypes.byref(p),
                                        0 if follow_symlinks else _lib.FILE_NOFOLLOW))
        try:
            return _info(p[0])
        finally:
            lib.sandbox_file_info_free(p, 1)

    def list(self, path: StrPath) -> List[FileInfo]:
        """The entries of a directory, sorted by name ("." and ".." left
        out)."""
        keep = Keep()
        p = ctypes.POINTER(_lib.FileInfo)()
        n = ctypes.c_size_t()
        raise_for(lib.sandbox_file_list(self._h(), keep.str(path, "path"), ctypes.byref(p),
                                        ctypes.byref(n), 0))
        try:
            out = [_info(p[i]) for i in range(n.value)]
        finally:
            lib.sandbox_file_info_free(p, n.value)
        return sorted(out, key=lambda i: i.name)

    def exists(self, path: StrPath) -> bool:
        """True if the path exists (a dangling symlink counts)."""
        from ._errors import ErrorCode, SandboxError
        try:
            self.stat(path, follow_symlinks=False)
            return True
        except SandboxError as e:
            if e.code == ErrorCode.NOTFOUND:
                return False
            raise

    def mkdir(self, path: StrPath, *, mode: int = 0, parents: bool = False) -> None:
        """Make a directory (mode 0: 0755); parents: like mkdir -p (no
        error if it exists)."""
        keep = Keep()
        raise_for(lib.sandbox_file_mkdir(self._h(), keep.str(path, "path"), uint(mode, "mode"),
                                         _lib.FILE_PARENTS if parents else 0))

    def remove(self, path: StrPath, *, recursive: bool = False) -> None:
        """Remove a file, symlink or empty directory; recursive: a whole
        tree (symlinks not followed)."""
        keep = Keep()
        raise_for(lib.sandbox_file_remove(self._h(), keep.str(path, "path"),
                                          _lib.FILE_RECURSIVE if recursive else 0))

    def upload(self, host_path: StrPath, guest_path: StrPath, *, parents: bool = False) -> None:
        """Copy a host file or directory tree into the guest (a file is
        replaced, a directory merged into)."""
        keep = Keep()
        raise_for(lib.sandbox_file_upload(self._h(), keep.str(host_path, "host_path"),
                                          keep.str(guest_path, "guest_path"),
                                          _lib.FILE_PARENTS if parents else 0))

    def download(self, guest_path: StrPath, host_path: StrPath) -> None:
        """Copy a guest file or directory tree out to host_path, which must
        not exist yet (its parent must). Guest symlinks stay symlinks."""
        keep = Keep()
        raise_for(lib.sandbox_file_download(self._h(), keep.str(guest_path, "guest_path"),
                                            keep.str(os.fspath(host_path), "host_path"), 0))
