"""What the reporter remembers between runs: the last report queued and delivered, the next
heartbeat, the last delivery problem. Plain JSON in the state dir, no secret in it.

Standard library only, because `status --short` reads it on every Coder metadata tick.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

TYPE_CHECKING = False  # typing itself is not imported: `status --short` runs every few seconds
if TYPE_CHECKING:
    from typing import Any

from workspace_agent import fsio
from workspace_agent.errors import AgentError
from workspace_agent.isotime import parse_time

__all__ = ["ReportState", "load", "parse_time", "save"]


@dataclass
class ReportState:
    last_fingerprint: str | None = None  # of the last report queued: "did anything change?"
    last_queued_at: str | None = None
    last_report_id: str | None = None
    heartbeat_due_at: str | None = None  # when a report is due even if unchanged (for display)
    heartbeat_interval_s: int | None = None  # what the server asked for at enrollment
    heartbeat_factor: float | None = None  # the jitter drawn for the last report (0.9 … 1.1)
    last_sent_at: str | None = None  # the server accepted a report then
    last_sent_report_id: str | None = None
    last_error: str | None = None  # why the last delivery stopped (None: it did not)
    last_error_at: str | None = None
    dropped_total: int = 0  # reports given up on (queue full, refused as malformed)
    identity_mode: str | None = None  # how the drift server knows this workspace (coder-agent-token is verified)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"


def load(path: Path) -> tuple[ReportState, str | None]:
    """The stored state, and a note when it was damaged (then a fresh state is used)."""
    try:
        fact = fsio.read_fact(path, max_bytes=256 * 1024)
    except AgentError as exc:
        return ReportState(), f"report state unreadable, starting afresh: {exc.message}"
    if fact.text is None:
        return ReportState(), None
    try:
        data = json.loads(fact.text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return ReportState(), f"report state {path} was damaged; starting afresh"
    defaults = asdict(ReportState())
    kept: dict[str, Any] = {}
    for name in (f.name for f in fields(ReportState)):
        value, default = data.get(name), defaults[name]
        expected: tuple[type, ...] = (str,)
        if name in ("dropped_total", "heartbeat_interval_s"):
            expected = (int,)
        elif name == "heartbeat_factor":
            expected = (int, float)
        if isinstance(value, expected) and not isinstance(value, bool):
            kept[name] = value
        elif name in data and value is not None:
            kept[name] = default  # a field of the wrong type is forgotten, not trusted
    return ReportState(**kept), None


def save(path: Path, state: ReportState) -> None:
    fsio.atomic_write(path, state.to_json(), 0o600)
