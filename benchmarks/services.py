"""Start a helper server as a separate process and wait until it says where it listens.

The provisioner stand-in prints `LISTENING http://127.0.0.1:PORT`; the other servers started by
the benchmarks print the same line. Each is stopped (SIGTERM, then SIGKILL) by its own pid.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import subprocess
import threading
import time
import urllib.request
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


def free_port() -> int:
    """A port nothing listens on right now (loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def service(argv: Sequence[str], env: Mapping[str, str], *, cwd: Path | None = None,
            timeout: float = 60.0, log: Path | None = None, ready: str | None = None) -> Iterator[Service]:
    """Run `argv` for the `with` block; yields once its LISTENING line appeared or, when
    `ready` (a base URL + path) is given, once that URL answers 200."""
    proc = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    url = None
    try:
        while url is None:
            if ready is not None and _answers(ready):
                url = "/".join(ready.split("/", 3)[:3])  # scheme://host:port
                break
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                what = f"answer {ready}" if ready else "report LISTENING"
                raise ServiceError(f"{argv[0]} … did not {what} within {timeout:.0f} s "
                                   f"(exit {proc.poll()}): {seen[-1500:].decode(errors='replace')}")
            readable, _, _ = select.select([proc.stdout], [], [], min(left, 0.2))
            if readable:
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
