"""Who the agent acts as for each path: the home's owner inside the home, root only for /etc.

Run as root over a home that belongs to someone else, every file operation on a path of that
home is done with the effective uid, gid and groups of the home's owner (`acting_for`), so the
files come out owned by the user and the kernel itself refuses what the user could not do (a
link to a root file, a directory the user cannot write). The managed directories in /etc
(`root_dirs`) stay root's. Outside a root run nothing is switched.

Why per operation with seteuid, not a child process that drops for good: one plan interleaves
home files and /etc files and is held under one lock; the windows spent as the user contain only
system calls (no imports, no user code, no threads in the agent); a child process that runs a
program (the code-server CLI) drops fully (`subprocess_ids`). docs/privilege.md has the picture.
"""

from __future__ import annotations

import contextlib
import os
import pwd
from collections.abc import Iterable, Iterator
from pathlib import Path

from workspace_agent.errors import AgentError
from workspace_agent.record import Record


class Owner(Record):
    """The identity a root run takes for the home's files."""

    uid: int
    gid: int
    groups: tuple[int, ...]


class Scope(Record):
    """The home this process works on, and whom it acts as inside it."""

    home: Path
    owner: Owner | None  # None: no switch (not root, or root's own home)
    root_dirs: tuple[Path, ...] = ()


_scope: Scope | None = None
_depth = 0  # > 0 while acting as the owner (nested calls do not switch again)


def owner_of(home: Path) -> Owner | None:
    """The owner of `home` as seen by a root process (None: nothing to switch to)."""
    if os.geteuid() != 0:
        return None
    try:
        info = os.stat(home)
    except OSError:
        return None  # no home yet: whoever creates it owns it
    if info.st_uid == 0:
        return None
    try:
        entry = pwd.getpwuid(info.st_uid)
    except KeyError:  # a uid without a passwd entry (a spare uid): its group is the home's
        return Owner(info.st_uid, info.st_gid, (info.st_gid,))
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    return Owner(info.st_uid, entry.pw_gid, groups)


def confine(home: Path, root_dirs: Iterable[Path] = ()) -> Scope:
    """From now on this process works on `home`: walks start there, and root acts as its owner."""
    global _scope
    _scope = Scope(home, owner_of(home), tuple(root_dirs))
    return _scope


def release() -> None:
    global _scope
    _scope = None


def current() -> Scope | None:
    return _scope


def parts_below(path: Path, root: Path) -> tuple[str, ...] | None:
    """`path`'s components below `root` (None: not inside it), as `is_relative_to` decides, but
    without making Path objects: every file operation asks this, hundreds of times per check."""
    whole, head = path.parts, root.parts
    return whole[len(head):] if whole[:len(head)] == head else None


def anchor(path: Path) -> Path | None:
    """The home when `path` is inside it (walks below it never follow a link), else None."""
    if _scope is not None and parts_below(path, _scope.home) is not None:
        return _scope.home
    return None


def acts_as_owner(path: Path) -> bool:
    """Root acting for the home's owner on `path`: everything but the root-owned managed dirs."""
    if _scope is None or _scope.owner is None:
        return False
    return not any(parts_below(path, root) is not None for root in _scope.root_dirs)


def acting_uid(path: Path) -> int:
    """The uid the kernel checks for an operation on `path` (and that owns what it creates)."""
    if acts_as_owner(path) and _scope is not None and _scope.owner is not None:
        return _scope.owner.uid
    return os.geteuid()


@contextlib.contextmanager
def acting_for(path: Path) -> Iterator[None]:
    """Do the block's file operations on `path` as the home's owner (a no-op when not root)."""
    global _depth
    if _depth or not acts_as_owner(path) or _scope is None or _scope.owner is None:
        yield
        return
    owner = _scope.owner
    saved_groups = os.getgroups()
    steps = 0  # how many of the three switches were made (undone in reverse)
    try:
        os.setgroups(list(owner.groups))
        steps = 1
        os.setegid(owner.gid)
        steps = 2
        os.seteuid(owner.uid)
        steps = 3
    except OSError as exc:
        _back_to_root(saved_groups, steps)
        raise AgentError(
            f"cannot act as the owner of {_scope.home} (uid {owner.uid}) to work inside it: {exc.strerror}; "
            "run the agent as that user, or as root with CAP_SETUID and CAP_SETGID"
        ) from None
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        _back_to_root(saved_groups, steps)


def _back_to_root(groups: list[int], steps: int) -> None:
    if steps >= 3:
        os.seteuid(0)
    if steps >= 2:
        os.setegid(0)
    if steps >= 1:
        os.setgroups(groups)


def subprocess_ids(path: Path) -> dict[str, object]:
    """`subprocess.run` arguments that run a program fully as the owner of `path`'s home."""
    if not acts_as_owner(path) or _scope is None or _scope.owner is None:
        return {}
    owner = _scope.owner
    return {"user": owner.uid, "group": owner.gid, "extra_groups": list(owner.groups)}
