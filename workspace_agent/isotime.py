"""ISO timestamps in the agent's records (a module of its own: `status --short` needs only this)."""

from __future__ import annotations

from datetime import datetime


def parse_time(value: object) -> datetime | None:
    """An ISO timestamp from a record, or None when missing, malformed or without a time zone."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
