"""What a request sent: its JSON object and its text fields, read the same way on every route.

A body over the limit, not JSON or not an object reads as {} (the platform's provisioner used
`get_json(silent=True) or {}`), so each route answers a missing field with its own sentence.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

MAX_BODY_BYTES = 16 * 1024


async def json_object(request: Request, max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The JSON object sent, or {}; never more than `max_bytes` read."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            return {}
    try:
        data = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def text_field(body: dict[str, Any], name: str, max_chars: int = 200) -> str:
    """A string field, stripped and cut to `max_chars`; "" when absent or not a string."""
    value = body.get(name)
    return value.strip()[:max_chars] if isinstance(value, str) else ""
