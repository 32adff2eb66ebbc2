"""A loopback stand-in of the drift server's two agent routes, for the agent's tests only.

It follows the contract in workspace_agent/wire.py (the real server in server/ implements the
same one; end-to-end tests use that):

  POST ENROLL_PATH   Authorization: Bearer <enrollment secret> and/or Coder-Agent-Token:
                     <agent token>, EnrollRequest
                     → 201 EnrollResponse (a new token each time; older tokens of that
                       workspace stop working, as a re-enrollment should); 401 bad secret;
                       422 malformed. With `agent_tokens` (token → workspace id: what Coder
                       would say), an agent token is checked first: its own workspace →
                       identity_mode coder-agent-token; any other → 403.
  POST REPORTS_PATH  Authorization: Bearer <workspace token>, Report
                     → 202 ReportAccepted, or 200 with duplicate=true for a known report id;
                       401 unknown/revoked token; 403 the report names another workspace;
                       413 body over `max_report_bytes`; 422 malformed.

Misbehaviour on demand: `mode = "unavailable"` answers 503 to everything; `canned` holds answers
(status, body) given to the next report posts before any check; `stop()` then `restart()` make
the port refuse connections and then serve again on the same port (the stand-in's memory is kept,
as a real server's database would be).

    with run_drift_server() as server:
        ...agent reports to server.url with server.enrollment_secret...
        assert [r["report_id"] for r in server.received] == [...]
"""

from __future__ import annotations

import contextlib
import hmac
import secrets as _secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self

from pydantic import ValidationError

from tests.standins._json_http import send_json
from workspace_agent.wire import (
    ENROLL_PATH,
    MAX_REPORT_BYTES,
    REPORTS_PATH,
    EnrollRequest,
    EnrollResponse,
    Report,
    ReportAccepted,
)

MODES = ("normal", "unavailable")


class Received(NamedTuple):
    """One request as the stand-in saw it (header names lower-cased, body as text)."""

    method: str
    path: str
    headers: dict[str, str]
    body: str


class DriftStandin:
    """The running stand-in: its URL, what it received and accepted, and its mode."""

    def __init__(self, enrollment_secret: str = "enroll-Ts9fQ2xLw8", *, heartbeat_interval_s: int = 300,
                 max_report_bytes: int = MAX_REPORT_BYTES, port: int = 0,
                 agent_tokens: dict[str, str] | None = None) -> None:
        self.enrollment_secret = enrollment_secret
        self.agent_tokens = agent_tokens  # None: this server cannot ask Coder (shared secret only)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.max_report_bytes = max_report_bytes
        self.mode = "normal"
        self.canned: list[tuple[int, dict[str, Any]]] = []
        self.requests: list[Received] = []
        self.received: list[dict[str, Any]] = []  # accepted reports (not duplicates), in arrival order
        self.tokens: dict[str, str] = {}  # token → workspace id (current tokens only)
        self.enrollments: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> DriftStandin:
        server = ThreadingHTTPServer(("127.0.0.1", self._port), _Handler)
        server.daemon_threads = True
        server.standin = self  # type: ignore[attr-defined]
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: connections are refused until `restart()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def restart(self) -> DriftStandin:
        return self.start()

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests use ----------------------------------------------------------------------------

    def revoke(self, workspace_id: str) -> None:
        """Forget every token of a workspace (its next report gets 401)."""
        with self._lock:
            for token in [t for t, ws in self.tokens.items() if ws == workspace_id]:
                del self.tokens[token]

    def report_ids(self) -> list[str]:
        return [r["report_id"] for r in self.received]

    def posts(self, path: str) -> list[Received]:
        return [r for r in list(self.requests) if r.path == path and r.method == "POST"]

    # -- the contract --------------------------------------------------------------------------------

    def _enroll(self, bearer: str, raw: bytes, agent_token: str = "") -> tuple[int, dict[str, Any]]:
        try:
            request = EnrollRequest.model_validate_json(raw)
        except ValidationError as exc:
            return 422, {"detail": exc.errors(include_url=False, include_context=False, include_input=False)}
        mode = "enrollment-secret"
        if agent_token and self.agent_tokens is not None:
            if self.agent_tokens.get(agent_token) != request.workspace.id:
                return 403, {"detail": "Coder does not vouch for this workspace: a workspace can only enroll itself"}
            mode = "coder-agent-token"
        elif not hmac.compare_digest(bearer.encode(), self.enrollment_secret.encode()):
            return 401, {"detail": "invalid enrollment secret"}
        token = "wst_" + _secrets.token_urlsafe(24)
        workspace_id = request.workspace.id
        with self._lock:
            for old in [t for t, ws in self.tokens.items() if ws == workspace_id]:
                del self.tokens[old]
            self.tokens[token] = workspace_id
            self.enrollments.append(request.model_dump(mode="json"))
        answer = EnrollResponse(workspace_id=workspace_id, workspace_token=token,
                                heartbeat_interval_s=self.heartbeat_interval_s, identity_mode=mode)
        return 201, answer.model_dump(mode="json")

    def _report(self, bearer: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self.canned:
                return self.canned.pop(0)
            workspace_id = self.tokens.get(bearer)
        if workspace_id is None:
            return 401, {"detail": "unknown or revoked workspace token"}
        if len(raw) > self.max_report_bytes:
            return 413, {"detail": f"report larger than {self.max_report_bytes} bytes"}
        try:
            report = Report.model_validate_json(raw)
        except ValidationError as exc:
            return 422, {"detail": exc.errors(include_url=False, include_context=False, include_input=False)}
        if report.workspace.id != workspace_id:
            return 403, {"detail": "this token may only report for its own workspace"}
        with self._lock:
            if report.report_id in {r["report_id"] for r in self.received}:
                return 200, ReportAccepted(report_id=report.report_id, duplicate=True).model_dump()
            self.received.append(report.model_dump(mode="json"))
        return 202, ReportAccepted(report_id=report.report_id).model_dump()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "drift-server-standin/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer(404, {"detail": "not found"})

    def do_POST(self) -> None:
        standin: DriftStandin = self.server.standin  # type: ignore[attr-defined]
        length = self.headers.get("Content-Length", "0")
        raw = self.rfile.read(int(length)) if length.isdigit() else b""
        path = self.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        standin.requests.append(Received("POST", path, headers, raw.decode("utf-8", "replace")))
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        bearer = bearer.strip() if scheme.lower() == "bearer" else ""
        if standin.mode == "unavailable":
            self._answer(503, {"detail": "database unavailable"})
        elif path == ENROLL_PATH:
            self._answer(*standin._enroll(bearer, raw, headers.get("coder-agent-token", "").strip()))
        elif path == REPORTS_PATH:
            self._answer(*standin._report(bearer, raw))
        else:
            self._answer(404, {"detail": "not found"})

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        send_json(self, status, payload)


@contextlib.contextmanager
def run_drift_server(**options: Any) -> Iterator[DriftStandin]:
    """A stand-in on 127.0.0.1 (a free port) for the `with` block."""
    standin = DriftStandin(**options)
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()
