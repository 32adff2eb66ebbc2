"""Loopback servers that answer with exact bytes: canned answers, and a server that drips.

    with canned_server(403, {"error": "forbidden"}) as server:   # every request gets this answer
        ...server.url, server.requests (raw request heads and bodies)...
    with dripping_server(interval=0.5) as server:                # one byte every 0.5 s, forever
        ...a client with a deadline...

The drip starts a plausible answer ("HTTP/1.1 200 OK", then an endless header) so that a client
that resets its timeout on every byte would wait forever; `drip_body=True` sends complete headers
first and drips an endless body instead.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RawServer:
    url: str
    requests: list[bytes] = field(default_factory=list)  # each request's head and what body came with it
    connections: int = 0


def _read_request(conn: socket.socket) -> bytes:
    """The request head and its Content-Length body (best effort, bounded)."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 1 << 20:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


@contextlib.contextmanager
def _serve(answer: Any) -> Iterator[RawServer]:
    """Accept connections; `answer(conn, stop)` writes whatever it wants after the request was read."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    stop = threading.Event()
    server = RawServer(f"http://127.0.0.1:{listener.getsockname()[1]}")
    workers: list[threading.Thread] = []

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                server.requests.append(_read_request(conn))
                answer(conn, stop)
            except OSError:
                pass  # the client hung up: what it was meant to do

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            server.connections += 1
            worker = threading.Thread(target=handle, args=(conn,), daemon=True)
            worker.start()
            workers.append(worker)

    thread = threading.Thread(target=accept, name="raw-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=2)
        for worker in workers:
            worker.join(timeout=2)
        listener.close()


def answer_bytes(status: int, body: Any = b"", headers: dict[str, str] | None = None,
                 content_type: str = "application/json") -> bytes:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    lines = [f"HTTP/1.1 {status} Canned", f"Content-Type: {content_type}", f"Content-Length: {len(raw)}",
             "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + raw


@contextlib.contextmanager
def canned_server(status: int, body: Any = b"", headers: dict[str, str] | None = None,
                  content_type: str = "application/json", *, raw: bytes | None = None) -> Iterator[RawServer]:
    """Every request gets the same answer (`raw` bytes as they are, when given)."""
    data = raw if raw is not None else answer_bytes(status, body, headers, content_type)

    def answer(conn: socket.socket, _stop: threading.Event) -> None:
        conn.sendall(data)

    with _serve(answer) as server:
        yield server


@contextlib.contextmanager
def dripping_server(interval: float = 0.5, *, drip_body: bool = False) -> Iterator[RawServer]:
    """Answers one byte every `interval` seconds and never finishes."""
    start = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    if drip_body:
        start += b"Content-Length: 100000000\r\n\r\n"
    filler = b" " if drip_body else b"X-Drip: " + b"a" * 1_000_000

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        for byte in (start + filler)[:]:
            if stop.wait(interval):
                return
            conn.sendall(bytes([byte]))
        while not stop.wait(interval):
            conn.sendall(b" ")

    with _serve(answer) as server:
        yield server


def elapsed(func: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(seconds, result or the exception raised) of one call."""
    started = time.monotonic()
    try:
        result: Any = func(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the caller inspects it
        result = exc
    return time.monotonic() - started, result
