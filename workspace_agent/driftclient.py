"""HTTP to the drift server: enroll and post one report, nothing else.

Each call returns an `Answer` (status and parsed body, or no answer at all) and leaves the
decision (retry, re-enroll, drop, queue) to report.py. Bodies are bounded both ways; neither
the enrollment secret, the agent token nor the workspace token ever appears in a message.

The HTTP is transport.py's; every request's time is a deadline over the whole exchange and is
cut to what is left of the caller's overall deadline (`until`), so a drift server that drips its
answers cannot stretch a delivery past it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from workspace_agent import transport
from workspace_agent.redact import redact
from workspace_agent.transport import AGENT_TOKEN_HEADER, TransportError
from workspace_agent.wire import ENROLL_PATH, REPORTS_PATH

MAX_ANSWER_BYTES = 64 * 1024
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Answer:
    """What the server said: `status` None means no answer (refused, timed out, reset)."""

    status: int | None
    body: Any  # parsed JSON, or None
    problem: str = ""  # a short description when status is None or the body is unusable

    def detail(self) -> str:
        """The server's own reason (FastAPI `detail` or `{"error": ...}`), shortened."""
        body = self.body
        if isinstance(body, dict):
            for key in ("detail", "error", "message"):
                value = body.get(key)
                if isinstance(value, dict):
                    value = value.get("message")
                if value:
                    text = value if isinstance(value, str) else json.dumps(value)
                    return text[:200]
        return self.problem


class DriftClient:
    """The drift server's two routes for the duration of a delivery (one connection per request)."""

    def __init__(self, base_url: str, *, timeout: float = REQUEST_TIMEOUT_S, secrets: tuple[str, ...] = (),
                 until: float | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._secrets = secrets
        self._timeout = timeout
        self._until = until  # time.monotonic() after which no request may still be running

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def enroll(self, enrollment_secret: str, body_json: str, agent_token: str = "") -> Answer:
        """Enroll with the shared secret, the workspace's Coder agent token, or both (the server
        prefers the agent token when it can ask Coder)."""
        extra = {AGENT_TOKEN_HEADER: agent_token} if agent_token else {}
        return self._post(ENROLL_PATH, enrollment_secret, body_json, extra)

    def post_report(self, token: str, body_json: str) -> Answer:
        return self._post(REPORTS_PATH, token, body_json)

    def _post(self, path: str, bearer: str, body_json: str, extra: dict[str, str] | None = None) -> Answer:
        timeout = self._timeout
        if self._until is not None:
            timeout = min(timeout, self._until - time.monotonic())
            if timeout <= 0:
                return Answer(None, None, "timed out (no time left)")
        headers = {"Content-Type": "application/json", "Accept": "application/json", **(extra or {})}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            answer = transport.request("POST", self.base_url + path, timeout=timeout, headers=headers,
                                       body=body_json.encode("utf-8"), max_body_bytes=MAX_ANSWER_BYTES,
                                       secrets=self._secrets)
        except TransportError as exc:
            if exc.kind == transport.TIMEOUT:
                return Answer(None, None, "timed out")
            return Answer(None, None, self._scrub(exc.message))
        if answer.too_large:
            return Answer(answer.status, None, "the answer was too large")
        try:
            body = json.loads(answer.body) if answer.body else None
        except (ValueError, RecursionError):
            return Answer(answer.status, None, "the answer was not JSON")
        return Answer(answer.status, body)

    def _scrub(self, text: str) -> str:
        return redact(text, self._secrets)
