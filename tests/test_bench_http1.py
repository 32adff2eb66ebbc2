"""The lean load-generation HTTP client against a real loopback server (stdlib http.server)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from benchmarks.http1 import HttpError, Pool

# Left out of `scripts/test --fast`: each test runs a loopback HTTP server under load.
pytestmark = pytest.mark.slow


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: ClassVar[set[int]] = set()

    def log_message(self, *_args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Handler.connections.add(id(self.connection))
        answer = b"got " + body + b" auth=" + self.headers.get("Authorization", "").encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/close":
            self.send_response(404)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"gone")
            self.close_connection = True
        elif self.path == "/slow":
            time.sleep(1.0)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_post_keeps_connections_alive_and_sends_headers(url: str) -> None:
    _Handler.connections.clear()

    async def go() -> list[tuple[int, bytes]]:
        async with Pool(url, 2) as pool:
            return [await pool.request("POST", "/x", f"n{i}".encode(), {"Authorization": "Bearer t"}) for i in range(5)]

    answers = asyncio.run(go())
    assert answers == [(201, f"got n{i} auth=Bearer t".encode()) for i in range(5)]
    assert len(_Handler.connections) == 1  # one after another: the same connection each time


def test_chunked_and_connection_close_answers(url: str) -> None:
    async def go() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        async with Pool(url, 1) as pool:
            return await pool.request("GET", "/chunked"), await pool.request("GET", "/close")

    chunked, closed = asyncio.run(go())
    assert chunked == (200, b"hello chunked world") and closed == (404, b"gone")


def test_concurrency_is_capped_by_the_pool_size(url: str) -> None:
    async def go() -> float:
        async with Pool(url, 2, timeout=5) as pool:
            began = time.perf_counter()
            await asyncio.gather(*(pool.request("GET", "/slow") for _ in range(4)))
            return time.perf_counter() - began

    assert 1.9 < asyncio.run(go()) < 4  # four 1 s requests over two connections


def test_timeouts_and_refused_connections_raise_http_error(url: str) -> None:
    async def slow() -> None:
        async with Pool(url, 1, timeout=0.2) as pool:
            await pool.request("GET", "/slow")

    with pytest.raises(HttpError, match="timeout"):
        asyncio.run(slow())

    async def refused() -> None:
        async with Pool("http://127.0.0.1:1", 1, timeout=2) as pool:
            await pool.request("GET", "/")

    with pytest.raises(HttpError):
        asyncio.run(refused())
    with pytest.raises(ValueError, match="only http"):
        Pool("https://127.0.0.1:1", 1)
