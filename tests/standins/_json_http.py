"""The JSON-over-http.server plumbing every loopback stand-in needs, written once."""

from __future__ import annotations

import contextlib
import json
from http.server import BaseHTTPRequestHandler
from typing import Any


def read_body(handler: BaseHTTPRequestHandler) -> Any:
    """The request body: parsed JSON, the raw bytes when it is not JSON, None when empty."""
    length = int(handler.headers.get("Content-Length") or 0)
    raw = handler.rfile.read(length) if length else b""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
    """Answer with `payload` as JSON; a client that already hung up is not an error."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    with contextlib.suppress(OSError):
        handler.wfile.write(data)
