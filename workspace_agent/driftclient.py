"""HTTP to the drift server: enroll and post one report, nothing else.

Each call returns an `Answer` (status and parsed body, or no answer at all) and leaves the
decision (retry, re-enroll, drop, queue) to report.py. Bodies are bounded both ways; neither
the enrollment secret, the agent token nor the workspace token ever appears in a message.

httpx is imported when a client is opened, never at import time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from workspace_agent import __version__
from workspace_agent.redact import redact
from workspace_agent.wire import ENROLL_PATH, REPORTS_PATH

if TYPE_CHECKING:  # pragma: no cover
    import httpx

MAX_ANSWER_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 3.0
REQUEST_TIMEOUT_S = 10.0
AGENT_TOKEN_HEADER = "Coder-Agent-Token"


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
    """One connection pool to the drift server for the duration of a delivery."""

    def __init__(self, base_url: str, *, transport: httpx.BaseTransport | None = None,
                 timeout: float = REQUEST_TIMEOUT_S, secrets: tuple[str, ...] = ()) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self._secrets = secrets
        self._httpx = httpx
        self._client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT_S, timeout)),
            follow_redirects=False,
            headers={"User-Agent": f"workspace-agent/{__version__}", "Accept": "application/json"},
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._client.close()

    def enroll(self, enrollment_secret: str, body_json: str, agent_token: str = "") -> Answer:
        """Enroll with the shared secret, the workspace's Coder agent token, or both (the server
        prefers the agent token when it can ask Coder)."""
        extra = {AGENT_TOKEN_HEADER: agent_token} if agent_token else {}
        return self._post(ENROLL_PATH, enrollment_secret, body_json, extra)

    def post_report(self, token: str, body_json: str) -> Answer:
        return self._post(REPORTS_PATH, token, body_json)

    def _post(self, path: str, bearer: str, body_json: str, extra: dict[str, str] | None = None) -> Answer:
        httpx = self._httpx
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity", **(extra or {})}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            with self._client.stream("POST", self.base_url + path, content=body_json.encode("utf-8"),
                                     headers=headers) as response:
                raw = bytearray()
                for chunk in response.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        return Answer(response.status_code, None, "the answer was too large")
                status = response.status_code
        except httpx.TimeoutException:
            return Answer(None, None, "timed out")
        except httpx.ConnectError as exc:
            return Answer(None, None, self._scrub(f"cannot connect ({_reason(exc)})"))
        except (httpx.TransportError, OSError) as exc:
            return Answer(None, None, self._scrub(f"connection failed ({_reason(exc)})"))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return Answer(status, None, "the answer was not JSON")
        return Answer(status, body)

    def _scrub(self, text: str) -> str:
        return redact(text, self._secrets)


def _reason(exc: BaseException) -> str:
    """The innermost OS reason of a connection failure ("Connection refused"), short."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return (str(exc) or type(exc).__name__)[:120]
