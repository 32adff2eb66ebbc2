"""Reading files as facts, and the one atomic writer; every path walked without following links.

A fact is explicit about absence: `FileFact.text is None` means the file does not exist; a path
that cannot be used (a directory, a symlink, a FIFO or device, unreadable, not UTF-8, too big)
raises AgentError with the reason, so the rule that needs it reports an error and nothing is
written.

Below the home (privilege.anchor) a path is reached from the home's directory descriptor one
component at a time with O_NOFOLLOW|O_DIRECTORY, and the file itself is opened relative to its
directory's descriptor with O_NOFOLLOW|O_NONBLOCK and checked with fstat before a byte is read:
a link anywhere, a FIFO or a device is refused, never followed or waited on. Each operation on
a path is done as the identity privilege.acting_for picks (the home's owner in a root run).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from workspace_agent import privilege
from workspace_agent.errors import AgentError
from workspace_agent.record import Record

MAX_MANAGED_FILE_BYTES = 8 * 1024 * 1024
TEMP_SUFFIX = ".tmp"
# The temp file's random part: 8 characters, from os.urandom as hex (this pattern also matches the
# names of earlier releases, which took them from mkstemp's alphabet; their leftovers are cleaned too).
_TEMP_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_READ_CHUNK = 1024 * 1024
_OPEN_FILE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Unusable(AgentError):
    """The path cannot be used as it is: a link (in it or at its end), a FIFO, a device, a
    directory, a hard-linked or another user's lock file. The home's layout, not a passing fault."""


class FileFact(Record):
    """What is on disk at a path: text (None when absent) and permission bits."""

    path: Path
    text: str | None
    mode: int | None  # permission bits, None when absent
    uid: int | None = None  # owner, None when absent
    links: int = 1  # hard links to the file (more than one: its bytes may be someone else's)

    @property
    def exists(self) -> bool:
        return self.text is not None

    @property
    def foreign(self) -> bool:
        """Owned by another user than the one we act as (not root): it cannot even chmod it."""
        acting = privilege.acting_uid(self.path)
        return self.uid is not None and acting != 0 and self.uid != acting


class DirItem(Record):
    """One name in a directory, as lstat sees it (a link is a link, never its target)."""

    name: str
    mode: int
    size: int
    mtime: float

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)


# --- walking ------------------------------------------------------------------------------------


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _open_dir(directory: Path, *, create: bool, report_as: Path | None = None) -> int:
    """A descriptor of `directory`; below the home no component may be a link (created when asked).

    Raises FileNotFoundError when a component is missing and `create` is false. A directory that
    cannot be created is reported as a failure to write `report_as` (the file it was for).
    """
    home = privilege.anchor(directory)
    parts = (privilege.parts_below(directory, home) or ()) if home is not None else ()
    if ".." in parts:
        raise AgentError(f"{directory}: a path with `..` is not used")
    start = home if home is not None else directory
    if create and not start.is_dir():
        _make_dirs(start, report_as)  # the home itself (or a root-owned dir outside it): the admin's path
    try:
        fd = os.open(start, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except NotADirectoryError:
        raise AgentError(f"{start} exists but is not a directory") from None
    except OSError as exc:
        raise write_error(report_as or start, exc) if create else AgentError(f"cannot open {start}: {exc.strerror}") from None
    for depth, part in enumerate(parts, 1):  # _step closes the descriptor it walks from, also when it fails
        fd = _step(fd, part, (start, parts[:depth]), create, report_as)
    return fd


def _step(parent_fd: int, name: str, where: tuple[Path, tuple[str, ...]], create: bool, report_as: Path | None) -> int:
    """Open one directory below `parent_fd` (closing it); never through a link. `where` (a start
    and the parts below it) names it in a message, made only then: a Path per step was a tenth
    of a check."""
    try:
        try:
            return os.open(name, _OPEN_DIR, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                raise
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=parent_fd)
        return os.open(name, _OPEN_DIR, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Unusable(_not_a_dir(parent_fd, name, where[0].joinpath(*where[1]))) from None
        if isinstance(exc, FileNotFoundError):
            raise
        path = where[0].joinpath(*where[1])
        raise write_error(report_as or path, exc) if create else AgentError(f"cannot open {path}: {exc.strerror}") from None
    finally:
        os.close(parent_fd)


def _not_a_dir(parent_fd: int, name: str, path: Path) -> str:
    with contextlib.suppress(OSError):
        if stat.S_ISLNK(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode):
            return (
                f"{path} is a symbolic link; the agent does not follow links inside the home: "
                "replace it with a real directory to let the agent manage what is below it"
            )
    return f"{path} is a file, not a directory: move it away to let the agent manage what belongs below it"


def _make_dirs(directory: Path, report_as: Path | None) -> None:
    """Outside the home (root's managed dirs), or the home itself: plain mkdir -p."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise AgentError(f"{directory} exists but is not a directory") from None
    except OSError as exc:
        raise write_error(report_as or directory, exc) from None


@contextlib.contextmanager
def _parent(path: Path, *, create: bool) -> Iterator[int]:
    fd = _open_dir(path.parent, create=create, report_as=path)
    try:
        yield fd
    finally:
        os.close(fd)


def _lstat_at(dir_fd: int, path: Path) -> os.stat_result | None:
    try:
        return os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AgentError(f"cannot inspect {path}: {exc.strerror}") from None


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count // (1024 * 1024)} MB"
    return f"{count // 1024} KB" if count >= 1024 else f"{count} bytes"


def _refuse_unusable(path: Path, info: os.stat_result, max_bytes: int) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise Unusable(
            f"{path} is a symbolic link; the agent does not write through links: "
            "replace it with a regular file to let the agent manage it"
        )
    if stat.S_ISDIR(info.st_mode):
        raise Unusable(f"{path} is a directory, not a file: move it away to let the agent manage it")
    if not stat.S_ISREG(info.st_mode):
        raise Unusable(f"{path} is {_kind(info.st_mode)}, not a regular file; left untouched: remove it")
    if info.st_size > max_bytes:
        raise AgentError(
            f"{path} is {_size(info.st_size)}, more than the {_size(max_bytes)} the agent edits; left untouched"
        )


def _open_regular(dir_fd: int, path: Path, flags: int, max_bytes: int) -> tuple[int, os.stat_result]:
    """Open `path` relative to its directory without following a link; refuse anything not regular."""
    try:
        fd = os.open(path.name, flags | _OPEN_FILE, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unusable(f"{path} is a symbolic link; the agent does not follow it: replace it with a regular file") from None
        if exc.errno == errno.EACCES:
            raise AgentError(f"cannot read {path}: permission denied") from None
        if isinstance(exc, FileNotFoundError):
            raise
        raise AgentError(f"cannot open {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        _refuse_unusable(path, info, max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _read_capped(fd: int, path: Path, max_bytes: int, expected: int = 0) -> bytearray:
    """Everything up to EOF, at most `max_bytes` (more is an error); `expected` sizes the buffer."""
    buffer = bytearray(min(expected, max_bytes) + 1)
    view = memoryview(buffer)
    total = 0
    try:
        while True:
            if total == len(buffer):
                if total > max_bytes:
                    raise AgentError(
                        f"{path} grew past the {_size(max_bytes)} the agent reads while it was read; left untouched"
                    )
                view.release()
                # grows by doubling from 64 KiB, in steps of at most 1 MiB: a small file read
                # without a size (or one that grew) does not cost a 1 MiB buffer (~1 ms)
                buffer.extend(bytes(min(max(total, 64 * 1024), _READ_CHUNK, max_bytes + 1 - total)))
                view = memoryview(buffer)
            try:
                count = os.readv(fd, [view[total:]])
            except OSError as exc:
                raise AgentError(f"cannot read {path}: {exc.strerror}") from None
            if not count:
                break
            total += count
    finally:
        view.release()
    if total > max_bytes:
        raise AgentError(f"{path} grew past the {_size(max_bytes)} the agent reads while it was read; left untouched")
    del buffer[total:]
    return buffer


def _decode(path: Path, data: bytes | bytearray) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AgentError(f"{path} is not UTF-8 text (byte {exc.start}); left untouched") from None


# --- reading ------------------------------------------------------------------------------------


def read_fact(path: Path, max_bytes: int = MAX_MANAGED_FILE_BYTES) -> FileFact:
    """Observe one managed file without following a symlink anywhere below the home."""
    with privilege.acting_for(path):
        try:
            with _parent(path, create=False) as dir_fd:
                return _fact_at(dir_fd, path, max_bytes)
        except FileNotFoundError:
            return FileFact(path, None, None)


def read_below(directory: Path, relatives: Sequence[tuple[str, str]],
               max_bytes: int = MAX_MANAGED_FILE_BYTES) -> list[FileFact | AgentError]:
    """`directory/folder/name` for each (folder, name), each read as read_fact reads it (no link
    anywhere below the home, regular files only, capped), with one walk to `directory` for all:
    an extensions dir has a manifest per extension, and walking to each from the home was most
    of reading them. A file that cannot be read safely is its AgentError, in its place."""
    with privilege.acting_for(directory):
        try:
            base_fd = _open_dir(directory, create=False)
        except FileNotFoundError:
            return [FileFact(directory / folder / name, None, None) for folder, name in relatives]
        try:
            return [_fact_below(base_fd, directory, folder, name, max_bytes) for folder, name in relatives]
        finally:
            os.close(base_fd)


def _fact_below(base_fd: int, directory: Path, folder: str, name: str, max_bytes: int) -> FileFact | AgentError:
    path = directory / folder / name
    try:
        dir_fd = _step(os.dup(base_fd), folder, (directory, (folder,)), False, None)
    except FileNotFoundError:
        return FileFact(path, None, None)
    except AgentError as exc:
        return exc
    try:
        return _fact_at(dir_fd, path, max_bytes)
    except FileNotFoundError:
        return FileFact(path, None, None)
    except AgentError as exc:
        return exc
    finally:
        os.close(dir_fd)


def _fact_at(dir_fd: int, path: Path, max_bytes: int) -> FileFact:
    """`path.name` in the open directory `dir_fd`, never through a link, never a FIFO or device."""
    info = _lstat_at(dir_fd, path)
    if info is None:
        return FileFact(path, None, None)
    _refuse_unusable(path, info, max_bytes)  # before opening: a FIFO or device is never opened
    try:
        fd, info = _open_regular(dir_fd, path, os.O_RDONLY, max_bytes)
    except FileNotFoundError:
        return FileFact(path, None, None)
    try:
        data = _read_capped(fd, path, max_bytes, info.st_size)
    finally:
        os.close(fd)
    return FileFact(path, _decode(path, data), stat.S_IMODE(info.st_mode), info.st_uid, info.st_nlink)


def read_linked(path: Path, max_bytes: int, *, truncate: bool = False, follow: int = 1) -> str | None:
    """A file the user may keep as a link (a dotfiles repo): links are followed only in the last
    `follow` components (its own name; 2: its folder too), read as the home's owner (so the
    kernel refuses what the user could not read), regular files only, at most `max_bytes`
    (`truncate`: the first `max_bytes`, else a larger file is an error). None when absent or a
    directory: there is nothing to read."""
    base = path.parents[follow - 1]
    with privilege.acting_for(path):
        try:
            dir_fd = _open_dir(base, create=False)
        except FileNotFoundError:
            return None
        try:
            fd = os.open(str(path.relative_to(base)), os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dir_fd)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise AgentError(f"cannot read {path}: {exc.strerror}") from None
        finally:
            os.close(dir_fd)
        try:
            return _read_followed(fd, path, max_bytes, truncate)
        finally:
            os.close(fd)


def _read_followed(fd: int, path: Path, max_bytes: int, truncate: bool) -> str | None:
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        return None
    if not stat.S_ISREG(info.st_mode):
        raise AgentError(f"{path} leads to {_kind(info.st_mode)}, not a regular file; not read")
    if info.st_size > max_bytes and not truncate:
        raise AgentError(f"{path} is larger than the {_size(max_bytes)} the agent reads; not read")
    try:
        data = os.read(fd, max_bytes) if truncate else _read_capped(fd, path, max_bytes, info.st_size)
    except OSError as exc:
        raise AgentError(f"cannot read {path}: {exc.strerror}") from None
    return data.decode("utf-8", errors="replace")


def list_dir(directory: Path) -> list[DirItem] | None:
    """The names in `directory` with what lstat says of each (None when it does not exist)."""
    with privilege.acting_for(directory):
        try:
            fd = _open_dir(directory, create=False)
        except FileNotFoundError:
            return None
        try:
            items: list[DirItem] = []
            for name in os.listdir(fd):
                with contextlib.suppress(OSError):
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    items.append(DirItem(name, info.st_mode, info.st_size, info.st_mtime))
        except OSError as exc:
            raise AgentError(f"cannot list {directory}: {exc.strerror}") from None
        finally:
            os.close(fd)
    return sorted(items, key=lambda item: item.name)


# --- writing ------------------------------------------------------------------------------------


def atomic_write(path: Path, text: str, mode: int | None = None, *, durable: bool = True) -> None:
    """Replace `path` with `text` so readers see the old or the new file, never a mix.

    Temp file in the same directory (created relative to its descriptor, O_EXCL|O_NOFOLLOW),
    fsync, chmod, rename, fsync the directory. `mode` None keeps the existing file's mode (0644
    for a new file). The owner of an existing file is kept when acting as root (e.g. at image
    build) so the workspace user can still read it. `durable=False` skips both fsyncs, for records
    that are only a cache (the last run's summary): still atomic for readers, but a power cut may
    lose the newest version, and the two fsyncs cost more than a whole `check` here (10-80 ms).
    """
    data = text.encode("utf-8")
    with privilege.acting_for(path), _parent(path, create=True) as dir_fd:
        current = _lstat_at(dir_fd, path)
        if current is not None and stat.S_ISLNK(current.st_mode):
            raise AgentError(f"{path} is a symbolic link; not writing through it")
        final_mode = mode if mode is not None else (stat.S_IMODE(current.st_mode) if current else 0o644)
        fd, tmp_name = _create_temp(dir_fd, path)
        try:
            os.fchmod(fd, final_mode)
            if current is not None and os.geteuid() == 0:
                with contextlib.suppress(OSError):
                    os.fchown(fd, current.st_uid, current.st_gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp_name, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            _discard_temp(fd, dir_fd, tmp_name)
            raise write_error(path, exc) from None
        except BaseException:
            _discard_temp(fd, dir_fd, tmp_name)
            raise
        if durable:
            with contextlib.suppress(OSError):
                os.fsync(dir_fd)


def _create_temp(dir_fd: int, path: Path) -> tuple[int, str]:
    """A new temp file beside `path`; the name's random part needs no import (this may run while
    acting as the user, who need not be able to read this Python's files)."""
    for _attempt in range(100):
        name = f".{path.name}.{os.urandom(4).hex()}{TEMP_SUFFIX}"
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue
        except OSError as exc:
            raise write_error(path, exc) from None
        return fd, name
    raise AgentError(f"cannot write {path}: no free temporary name beside it")


def _discard_temp(fd: int, dir_fd: int, name: str) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def open_lock(path: Path) -> int:
    """A descriptor of the lock file at `path`: created 0600 if missing, never through a link,
    and only a regular file with one link that belongs to the identity we act as (so writing a
    pid into it can never touch someone else's file)."""
    with privilege.acting_for(path), _parent(path, create=True) as dir_fd:
        try:
            fd = os.open(path.name, os.O_RDWR | os.O_CREAT | _OPEN_FILE, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Unusable(f"{path} is a symbolic link; the agent does not follow it: remove it") from None
            if exc.errno == errno.EISDIR:
                raise Unusable(f"{path} is a directory, not a file: remove it") from None
            raise write_error(path, exc) from None
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            problem = f"{path} is {_kind(info.st_mode)}, not a regular file: remove it"
        elif info.st_nlink != 1:
            problem = f"{path} has {info.st_nlink} hard links, so it may be another file: remove it"
        elif info.st_uid != privilege.acting_uid(path) and os.geteuid() != 0:
            problem = f"{path} belongs to uid {info.st_uid}, not to this user: remove it"
        if problem:
            os.close(fd)
            raise Unusable(problem)
        return fd


def open_home(path: Path) -> int | None:
    """A descriptor of the home that holds `path` (None: `path` is not below one). A lock of last
    resort: the user can put a link where a lock file belongs, never replace their home."""
    home = privilege.anchor(path)
    if home is None:
        return None
    with privilege.acting_for(path):
        try:
            return os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None


def writable_by_owner(fact: FileFact) -> bool:
    """Whether the person who owns this file left it writable (a read-only file says "hands off").

    As root every file is writable, so the owner's write bit is what counts; as anyone else it is
    whether this process may write it (the owner's bit, or the file belongs to someone else).
    """
    if fact.mode is None:
        return True
    if privilege.acting_uid(fact.path) == 0:
        return bool(fact.mode & stat.S_IWUSR)
    if fact.uid == privilege.acting_uid(fact.path):
        return bool(fact.mode & stat.S_IWUSR)
    with privilege.acting_for(fact.path):
        return os.access(fact.path, os.W_OK, effective_ids=True, follow_symlinks=False)


def temp_target(name: str) -> str | None:
    """The target a temp file of `atomic_write` was for (`.NAME.xxxxxxxx.tmp` → NAME), else None.

    Plain string checks, not a regular expression per directory: bootstrap sweeps every managed
    directory, and compiling those patterns was a tenth of its time.
    """
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return None
    target, dot, random_part = name[1:-len(TEMP_SUFFIX)].rpartition(".")
    if not (dot and target and len(random_part) == 8 and set(random_part) <= _TEMP_CHARS):
        return None
    return target


def sweep_temps(directory: Path, names: Collection[str], min_age_s: float = 0.0) -> list[Path]:
    """Remove the temp files an interrupted `atomic_write` left beside its targets.

    `names` are the target names; only regular files named exactly as `atomic_write` names its
    temp files for them (`.NAME.xxxxxxxx.tmp`) are removed, and only when older than `min_age_s`
    (0 when the caller holds the lock that every writer of those targets takes: then any such
    file is a leftover). Returns what was removed.
    """
    removed: list[Path] = []
    now = time.time()
    with privilege.acting_for(directory):
        try:
            fd = _open_dir(directory, create=False)
        except (OSError, AgentError):
            return []
        try:
            for name in os.listdir(fd):
                if temp_target(name) not in names:
                    continue
                with contextlib.suppress(OSError):
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= min_age_s:
                        os.unlink(name, dir_fd=fd)
                        removed.append(directory / name)
            if removed:
                with contextlib.suppress(OSError):
                    os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def set_mode(path: Path, mode: int) -> None:
    """Fix permission bits in place (a change of mode alone needs no rewrite), on the file itself."""
    with privilege.acting_for(path):
        try:
            with _parent(path, create=False) as dir_fd:
                fd, _info = _open_regular(dir_fd, path, os.O_RDONLY, 1 << 62)
                try:
                    os.fchmod(fd, mode)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise write_error(path, exc) from None


def remove_file(path: Path) -> None:
    with privilege.acting_for(path):
        try:
            with _parent(path, create=False) as dir_fd:
                os.unlink(path.name, dir_fd=dir_fd)
                with contextlib.suppress(OSError):
                    os.fsync(dir_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise write_error(path, exc) from None


def rename(path: Path, new_name: str) -> None:
    """Rename `path` within its own directory (a file already gone is fine)."""
    with privilege.acting_for(path):
        try:
            with _parent(path, create=False) as dir_fd:
                os.replace(path.name, new_name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise write_error(path, exc) from None


def remove_tree(path: Path) -> None:
    """Delete `path` (a folder with what is in it, or only the link when it is one), reached
    without following a link, and never leaving its parent directory."""
    import shutil  # only when an extension folder must go; before acting as the user (see atomic_write)

    with privilege.acting_for(path):
        try:
            with _parent(path, create=False) as dir_fd:
                info = _lstat_at(dir_fd, path)
                if info is None:
                    return
                if stat.S_ISDIR(info.st_mode):
                    shutil.rmtree(path.name, dir_fd=dir_fd)
                else:
                    os.unlink(path.name, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AgentError(f"cannot delete {path}: {exc.strerror or exc}") from None


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
    if exc.errno == errno.ELOOP:
        return AgentError(f"cannot write {path}: a symbolic link is in the way; the agent does not follow it")
    return AgentError(f"cannot write {path}: {exc.strerror or exc}")
