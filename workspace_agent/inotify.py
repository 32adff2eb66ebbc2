"""The kernel's file events (Linux inotify) through ctypes: no polling and no new dependency.

Only what `watch` needs: one non-blocking descriptor, watches on directories, and the events
read from it parsed into (watch descriptor, mask, name). A watch is put on the *directory* that
holds a file, never on the file: editors that replace a file by rename, or delete and recreate
it, leave a watch on the file's old inode behind, while the directory sees every one of those.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from workspace_agent.errors import AgentError

IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

# What changes a file's content or existence inside a watched directory. IN_MODIFY is left out on
# purpose: it fires in the middle of a write, and reading a half-written file would be wrong.
DIR_EVENTS = (
    IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
    | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
)
GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED  # the watched directory itself went away
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
READ_BYTES = 64 * 1024


@dataclass(frozen=True)
class Event:
    wd: int  # -1 for a queue overflow
    mask: int
    name: str  # the entry inside the watched directory ("" for the directory itself)

    @property
    def overflow(self) -> bool:
        return bool(self.mask & IN_Q_OVERFLOW)


def libc() -> ctypes.CDLL:
    """The C library already linked into this process (no ctypes.util: it imports half the stdlib)."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError as exc:
        raise AgentError(f"cannot load the C library for inotify ({exc}): `watch` needs Linux") from None


class Inotify:
    """One inotify instance; `close()` (or `with`) releases it and every watch on it."""

    def __init__(self) -> None:
        self._libc = libc()
        try:
            self._add = self._libc.inotify_add_watch
            self._rm = self._libc.inotify_rm_watch
            init = self._libc.inotify_init1
        except AttributeError:
            raise AgentError("this C library has no inotify: `watch` needs Linux") from None
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add.restype = ctypes.c_int
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        self._rm.restype = ctypes.c_int
        init.argtypes = [ctypes.c_int]
        init.restype = ctypes.c_int
        fd = init(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            hint = " (raise fs.inotify.max_user_instances)" if err == 24 else ""
            raise AgentError(f"cannot start inotify: {os.strerror(err)}{hint}")
        self.fd = fd

    def add_dir(self, path: Path) -> int | None:
        """Watch a directory; None when it is not there (or not a directory) any more."""
        wd = self._add(self.fd, os.fsencode(path), DIR_EVENTS)
        if wd >= 0:
            return int(wd)
        err = ctypes.get_errno()
        if err in (2, 20):  # ENOENT, ENOTDIR: gone between looking and watching
            return None
        hint = " (raise fs.inotify.max_user_watches)" if err == 28 else ""
        raise AgentError(f"cannot watch {path}: {os.strerror(err)}{hint}")

    def remove(self, wd: int) -> None:
        self._rm(self.fd, wd)  # a watch the kernel already dropped answers EINVAL: nothing to do

    def read(self) -> list[Event]:
        """Every event waiting now (none: an empty list; the descriptor never blocks)."""
        try:
            data = os.read(self.fd, READ_BYTES)
        except BlockingIOError:
            return []
        return list(parse(data))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def parse(data: bytes) -> Iterator[Event]:
    """Split a read() of the inotify descriptor into events (names are NUL-padded)."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        raw = data[offset: offset + length]
        offset += length
        yield Event(wd, mask, os.fsdecode(raw.split(b"\0", 1)[0]))
