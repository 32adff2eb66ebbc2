"""A loopback server that accepts connections and never answers: a gateway that is stuck.

    with stalled_server() as url:     # http://127.0.0.1:PORT
        ...a client with a short timeout...

Also `closed_port()`: a port nothing listens on (bound, then released), for "gateway down", and
`dripping_server()`: it answers at once but sends its body a byte at a time, each byte well within
any per-read timeout (a slow or hostile peer that only a deadline over the whole answer stops).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def stalled_server() -> Iterator[str]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, name="stalled-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            with contextlib.suppress(OSError):
                conn.close()
        listener.close()


@contextlib.contextmanager
def dripping_server(every_s: float = 0.2, status: int = 200) -> Iterator[str]:
    """Every request is answered with a status line and headers at once, then a 1 MB JSON body
    one byte every `every_s` seconds (until the client goes away)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def drip(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {1 << 20}\r\n\r\n[".encode()
                )
                while not stop.wait(every_s):
                    conn.sendall(b" ")
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=drip, args=(conn,), name="drip", daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, name="dripping-server", daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        acceptor.join(timeout=2)
        for thread in threads:
            thread.join(timeout=2)
        listener.close()


def closed_port() -> str:
    """The URL of a loopback port that was free a moment ago and has no listener now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
