"""One run at a time per workspace user: an advisory lock that a second run waits for."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from workspace_agent import fsio
from workspace_agent.errors import AgentError


@contextlib.contextmanager
def exclusive(path: Path, wait: float) -> Iterator[None]:
    """Hold the lock for the block; wait up to `wait` seconds for another run to finish.

    The lock file is opened by fsio.open_lock: never through a link, only a regular file of our
    own, so writing the pid into it cannot truncate anyone else's file. Where the user left
    something else there (a link, a FIFO, a linked parent directory), the home directory itself
    is locked instead: planting a link must not keep the lockdown from being applied.
    """
    try:
        fd = fsio.open_lock(path)
    except fsio.Unusable as exc:
        home_fd = fsio.open_home(path)
        if home_fd is None:
            raise AgentError(f"cannot take the run lock: {exc.message}") from None
        fd = home_fd  # a directory: the pid is not written (the writes below fail and are ignored)
    except AgentError as exc:
        raise AgentError(f"cannot take the run lock: {exc.message}") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(fd)
                    raise AgentError(
                        f"another workspace-agent run{holder} still holds {path} after {wait:g} s; "
                        "try again when it has finished (or raise --wait)"
                    ) from None
                time.sleep(0.05)
        with contextlib.suppress(OSError):  # who holds it is only for the message; a full disk must not stop us
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip() or "0")
        if pid:
            return f" (pid {pid})"
    return ""
