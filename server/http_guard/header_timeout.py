"""uvicorn's HTTP protocol with a header-read timeout.

uvicorn closes an idle keep-alive connection (`timeout_keep_alive`) but has no limit on how long
a client may take to send a request's headers: a connection that sent half a request line stays
open forever, and a few thousand of them hold the server's sockets and memory. This protocol arms
a timer when a connection opens and after each response; when it fires while no request is being
handled (the next request's headers are still incomplete), the connection is closed.

Request lines and headers larger than MAX_HEADER_BYTES close the connection as well (httptools
has no such limit of its own). Pass the class to uvicorn as `http=HeaderTimeoutProtocol`; the
seconds come from the environment variable HTTP_GUARD_HEADER_TIMEOUT_S, so that `--workers`
processes (which get the class by name) see the same setting.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

DEFAULT_HEADER_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 64 * 1024  # a request line and headers larger than this close the connection
ENV = "HTTP_GUARD_HEADER_TIMEOUT_S"

try:  # uvicorn[standard] parses HTTP with httptools; plain uvicorn with h11
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]


def header_timeout_s() -> float:
    raw = os.environ.get(ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_HEADER_TIMEOUT_S
    except ValueError:
        return DEFAULT_HEADER_TIMEOUT_S
    return value if value > 0 else DEFAULT_HEADER_TIMEOUT_S


class HeaderTimeoutProtocol(_Base):  # type: ignore[misc, valid-type]
    """A connection must complete each request's headers within `header_timeout_s()`."""

    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0  # received since the last request ended, while its headers are incomplete

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        waiting = not self._busy()
        super().data_received(data)
        if waiting and not self._busy():
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
                self.transport.close()  # headers this large are not a client of ours

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        self._header_bytes = 0
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(header_timeout_s(), self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._busy() or self.transport.is_closing():
            return  # a request is being handled: its body has its own timeout (BodyLimit)
        self.transport.close()
