"""One run at a time per workspace user: an advisory lock that a second run waits for."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from workspace_agent.errors import AgentError
from workspace_agent.fsio import write_error


@contextlib.contextmanager
def exclusive(path: Path, wait: float) -> Iterator[None]:
    """Hold the lock for the block; wait up to `wait` seconds for another run to finish."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise AgentError(f"cannot take the run lock: {write_error(path, exc).message}") from None
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
            os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip() or "0")
        if pid:
            return f" (pid {pid})"
    return ""
