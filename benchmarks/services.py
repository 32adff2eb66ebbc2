"""Start a helper server as a separate process and wait until it says where it listens.

The provisioner stand-in prints `LISTENING http://127.0.0.1:PORT`; the other servers started by
the benchmarks print the same line. Each is stopped (SIGTERM, then SIGKILL) by its own pid.
"""

from __future__ import annotations

import contextlib
import re
import select
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_LISTENING = re.compile(rb"LISTENING (\S+)")


class ServiceError(Exception):
    """A helper server did not come up: the message has the tail of its output."""


@dataclass
class Service:
    url: str
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def service(argv: Sequence[str], env: Mapping[str, str], *, cwd: Path | None = None,
            timeout: float = 60.0, log: Path | None = None) -> Iterator[Service]:
    """Run `argv` for the `with` block; yields once its LISTENING line appeared."""
    proc = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    url = None
    try:
        while url is None:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise ServiceError(f"{argv[0]} … did not report LISTENING within {timeout:.0f} s "
                                   f"(exit {proc.poll()}): {seen[-1500:].decode(errors='replace')}")
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
            if ready:
                chunk = proc.stdout.read1(65536)  # type: ignore[attr-defined]
                seen += chunk
                match = _LISTENING.search(seen)
                if match:
                    url = match.group(1).decode()
        # Keep draining its output so a chatty server never blocks on a full pipe.
        drain = threading.Thread(target=_drain, args=(proc.stdout, log), daemon=True)
        drain.start()
        try:
            yield Service(url, proc)
        finally:
            _stop(proc)
            drain.join(timeout=10)
    finally:
        _stop(proc)


def _drain(stream: IO[bytes], log: Path | None) -> None:
    with open(log, "ab") if log else open("/dev/null", "wb") as sink:
        for chunk in iter(lambda: stream.read(65536), b""):
            sink.write(chunk)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
