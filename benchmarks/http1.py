"""A lean asyncio HTTP/1.1 client (keep-alive, Content-Length or chunked answers) for load generation.

Measured here: httpx's AsyncClient spends 1–3 ms of CPU per request (more with more connections),
as much as the drift server itself, so on 2 cores the client would be the bottleneck. This one
costs tens of microseconds. It speaks just enough HTTP/1.1 for loopback benchmarks: no TLS, no
proxies, no redirects.
"""

from __future__ import annotations

import asyncio
from typing import Self
from urllib.parse import urlsplit


class HttpError(Exception):
    """No complete answer: connection refused or reset, timeout, malformed response."""


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class Pool:
    """At most `size` keep-alive connections to one loopback server; callers beyond wait (FIFO)."""

    def __init__(self, url: str, size: int, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// URLs: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout = timeout
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(size)
        self._hostport = f"{self.host}:{self.port}".encode()

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body) of one request; raises HttpError when there is no complete answer."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            fresh = conn is None
            try:
                if conn is None:
                    conn = await self._connect()
                try:
                    status, data, keep = await asyncio.wait_for(self._exchange(conn, method, path, body, headers),
                                                                self.timeout)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    if fresh:
                        raise
                    conn.close()  # a kept-alive connection the server closed meanwhile: retry once
                    conn = await self._connect()
                    try:
                        status, data, keep = await asyncio.wait_for(
                            self._exchange(conn, method, path, body, headers), self.timeout)
                    except Exception:  # noqa: BLE001 - any failure of the retry is this request's failure
                        raise HttpError(f"{type(exc).__name__} after reconnect") from None
            except TimeoutError:
                if conn is not None:
                    conn.close()
                raise HttpError(f"timeout after {self.timeout:g} s") from None
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                if conn is not None:
                    conn.close()
                raise HttpError(f"{type(exc).__name__}: {exc}") from None
            if keep:
                self._idle.append(conn)
            else:
                conn.close()
            return status, data

    async def _connect(self) -> _Conn:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
        return _Conn(reader, writer)

    async def _exchange(self, conn: _Conn, method: str, path: str, body: bytes,
                        headers: dict[str, str] | None) -> tuple[int, bytes, bool]:
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self._hostport,
                b"Content-Length: " + str(len(body)).encode()]
        head += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
        conn.writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await conn.writer.drain()
        raw = await conn.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        if "content-length" in fields:
            data = await conn.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await conn.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await conn.reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            data = b"".join(chunks)
        else:
            data = await conn.reader.read()  # until the server closes
            return status, data, False
        keep = fields.get("connection", "").lower() != "close"
        return status, data, keep

    async def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
