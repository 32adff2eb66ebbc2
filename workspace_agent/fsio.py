"""Reading files as facts, and the one atomic writer.

A fact is explicit about absence: `FileFact.text is None` means the file does not exist; a path
that cannot be used (a directory, a symlink, unreadable, not UTF-8, too big) raises AgentError
with the reason, so the rule that needs it reports an error and nothing is written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from workspace_agent.errors import AgentError

MAX_MANAGED_FILE_BYTES = 8 * 1024 * 1024
TEMP_SUFFIX = ".tmp"
# mkstemp's random part: 8 characters from this alphabet (CPython's tempfile._RandomNameSequence).
_TEMP_RANDOM = r"[a-z0-9_]{8}"


@dataclass(frozen=True)
class FileFact:
    """What is on disk at a path: text (None when absent) and permission bits."""

    path: Path
    text: str | None
    mode: int | None  # permission bits, None when absent
    uid: int | None = None  # owner, None when absent

    @property
    def exists(self) -> bool:
        return self.text is not None

    @property
    def foreign(self) -> bool:
        """Owned by another user than this (non-root) process: it cannot even chmod it."""
        return self.uid is not None and os.geteuid() != 0 and self.uid != os.geteuid()


def read_fact(path: Path, max_bytes: int = MAX_MANAGED_FILE_BYTES) -> FileFact:
    """Observe one managed file without following a symlink at its own name."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return FileFact(path, None, None)
    except NotADirectoryError:
        raise AgentError(f"{path}: a parent of this path is a file, not a directory") from None
    except OSError as exc:
        raise AgentError(f"cannot inspect {path}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise AgentError(
            f"{path} is a symbolic link; the agent does not write through links: "
            "replace it with a regular file to let the agent manage it"
        )
    if stat.S_ISDIR(info.st_mode):
        raise AgentError(f"{path} is a directory, not a file: move it away to let the agent manage it")
    if not stat.S_ISREG(info.st_mode):
        raise AgentError(f"{path} is not a regular file")
    if info.st_size > max_bytes:
        raise AgentError(
            f"{path} is {info.st_size // (1024 * 1024)} MB, more than the {max_bytes // (1024 * 1024)} MB "
            "the agent edits; left untouched"
        )
    try:
        data = path.read_bytes()
    except PermissionError:
        raise AgentError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise AgentError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AgentError(f"{path} is not UTF-8 text (byte {exc.start}); left untouched") from None
    return FileFact(path, text, stat.S_IMODE(info.st_mode), info.st_uid)


def atomic_write(path: Path, text: str, mode: int | None = None) -> None:
    """Replace `path` with `text` so readers see the old or the new file, never a mix.

    Temp file in the same directory, fsync, chmod, rename, fsync the directory. `mode` None keeps
    the existing file's mode (0644 for a new file). The owner of an existing file is kept when
    running as root (e.g. at image build) so the workspace user can still read it.
    """
    directory = path.parent
    _ensure_dir(directory)
    try:
        current = os.lstat(path)
    except FileNotFoundError:
        current = None
    if current is not None and stat.S_ISLNK(current.st_mode):
        raise AgentError(f"{path} is a symbolic link; not writing through it")
    final_mode = mode if mode is not None else (stat.S_IMODE(current.st_mode) if current else 0o644)
    data = text.encode("utf-8")
    try:
        import tempfile  # writes only: check and status never load it

        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=directory)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), final_mode)
            if current is not None and os.geteuid() == 0:
                with contextlib.suppress(OSError):
                    os.fchown(handle.fileno(), current.st_uid, current.st_gid)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise write_error(path, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(directory)


def writable_by_owner(fact: FileFact) -> bool:
    """Whether the person who owns this file left it writable (a read-only file says "hands off").

    As root every file is writable, so the owner's write bit is what counts; as anyone else it is
    whether this process may write it (the owner's bit, or the file belongs to someone else).
    """
    if fact.mode is None:
        return True
    if os.geteuid() == 0:
        return bool(fact.mode & stat.S_IWUSR)
    return os.access(fact.path, os.W_OK, effective_ids=True, follow_symlinks=False)


def sweep_temps(directory: Path, name_pattern: str, min_age_s: float = 0.0) -> list[Path]:
    """Remove the temp files an interrupted `atomic_write` left beside its targets.

    `name_pattern` (a regular expression) matches the target names; only regular files named
    exactly as `atomic_write` names its temp files (`.NAME.xxxxxxxx.tmp`) are removed, and only
    when older than `min_age_s` (0 when the caller holds the lock that every writer of those
    targets takes: then any such file is a leftover). Returns what was removed.
    """
    pattern = re.compile(rf"\.(?:{name_pattern})\.{_TEMP_RANDOM}{re.escape(TEMP_SUFFIX)}")
    try:
        scan = list(os.scandir(directory))
    except OSError:
        return []
    removed: list[Path] = []
    now = time.time()
    for item in scan:
        if not pattern.fullmatch(item.name):
            continue
        with contextlib.suppress(OSError):
            info = item.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= min_age_s:
                os.unlink(item.path)
                removed.append(Path(item.path))
    if removed:
        _fsync_dir(directory)
    return removed


def set_mode(path: Path, mode: int) -> None:
    """Fix permission bits in place (a change of mode alone needs no rewrite)."""
    try:
        os.chmod(path, mode, follow_symlinks=False)
    except OSError as exc:
        raise write_error(path, exc) from None


def remove_file(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise write_error(path, exc) from None
    _fsync_dir(path.parent)


def _ensure_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise AgentError(f"{directory} exists but is not a directory") from None
    except OSError as exc:
        raise write_error(directory, exc) from None


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_error(path: Path, exc: OSError) -> AgentError:
    """Turn an OS error into a sentence with the next step."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return AgentError(f"cannot write {path}: the disk is full; free some space and run again")
    if exc.errno == errno.EFBIG:
        return AgentError(
            f"cannot write {path}: it would be larger than this process may write (the file size "
            "limit, `ulimit -f`); raise the limit and run again"
        )
    if exc.errno == errno.EROFS:
        return AgentError(f"cannot write {path}: the file system is read-only")
    if exc.errno == errno.EACCES:
        return AgentError(f"cannot write {path}: permission denied (check the owner and mode of {path.parent})")
    if exc.errno == errno.EPERM:
        return AgentError(
            f"cannot write {path}: operation not permitted (is it immutable or append-only? "
            f"see `lsattr {path}`; else check the owner and mode of {path.parent})"
        )
    return AgentError(f"cannot write {path}: {exc.strerror or exc}")
