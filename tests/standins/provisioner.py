"""A loopback stand-in of the platform's key provisioner, for tests and benchmarks only.

It follows the contract in shared/reference/platform.md ("Key provisioner") and can
misbehave on demand. Standard library only, so it starts in milliseconds:

    with run_provisioner() as prov:            # 127.0.0.1, a free port, in a thread
        ...fetch_key(prov.url, prov.secret, ...)...
        prov.mode = "fail502"                   # switch behaviour while it runs
        assert prov.requests[-1].body["workspace_id"] == "ws-1"

Modes
  normal   the contract: POST /api/v1/keys/workspace → 201 new key / 200 the same key again
           (the first enforcement level is kept: anti-downgrade), 400, 401; GET /health,
           /health/ready, /api/v1/keys/info (LiteLLM-shaped key info for a virtual key).
  fail502  key requests that pass auth and validation get 502 {"error": "Failed to generate
           key: ..."}, as when LiteLLM is down; /health/ready says degraded.
  fail500  key requests that pass auth get 500 text/plain "Internal Server Error" (a crash).
  flaky    the first `fail_first` key requests fail (`fail_with`: "502", "reset" or
           "alternate"), then normal.
  slow     every request waits `delay` seconds, then is answered as in normal mode.
  garbage  key requests get 200 text/html "<html>oops</html>".
  badjson  key requests get 200 application/json "{not json".
  nokey    key requests get 201 {"reused": false}.
  emptykey key requests get 201 {"key": "", "reused": false}.
  huge     key requests get 200 with a `huge_bytes` body (20 MB), streamed chunked, or with
           its Content-Length announced when `huge_content_length` is set.
  hang     every request is read and never answered until the stand-in stops.
  reset    every request is read, then the connection is reset without an answer.
"Garbage" modes (garbage, badjson, nokey, emptykey, huge) and flaky failures come before the bearer
check, as a wrong URL or a broken proxy would; fail502 comes after it, as the real server's.

As a process (for benchmarks):
    python -m tests.standins.provisioner --port 0 --mode normal
prints `LISTENING http://127.0.0.1:PORT` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import secrets as _secrets
import signal
import socket
import ssl
import struct
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

MODES = (
    "normal",
    "fail502",
    "fail500",
    "flaky",
    "slow",
    "garbage",
    "badjson",
    "nokey",
    "emptykey",
    "huge",
    "hang",
    "reset",
)
LEVELS = ("standard", "design-first", "unrestricted")
KEY_PATH = "/api/v1/keys/workspace"
INFO_PATH = "/api/v1/keys/info"
_GARBAGE_MODES = ("garbage", "badjson", "nokey", "emptykey", "huge")


class Received(NamedTuple):
    """One request as the stand-in saw it (header names lower-cased)."""

    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON; the raw bytes when it is not JSON; None when empty


@dataclass
class Issued:
    """What the stand-in stored with a key it issued (the key's LiteLLM metadata)."""

    key: str
    workspace_id: str
    username: str
    workspace_name: str
    enforcement_level: str
    guardrail_action: str
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


class Standin:
    """The running stand-in: its URL, what it received, what it issued, and its mode."""

    def __init__(
        self,
        mode: str = "normal",
        secret: str = "test-secret",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        fail_first: int = 2,
        fail_with: str = "502",
        delay: float = 2.0,
        huge_bytes: int = 20 * 1024 * 1024,
        huge_content_length: bool = False,
        budget: float = 10.0,
        tls: tuple[str, str] | None = None,
    ) -> None:
        if fail_with not in ("502", "reset", "alternate"):
            raise ValueError(f"fail_with must be '502', 'reset' or 'alternate', not {fail_with!r}")
        self.secret = secret
        self.fail_first = fail_first
        self.fail_with = fail_with
        self.delay = delay
        self.huge_bytes = huge_bytes
        self.huge_content_length = huge_content_length
        self.budget = budget
        self.requests: list[Received] = []
        self.keys: dict[str, str] = {}  # workspace_id → key
        self.issued: dict[str, Issued] = {}  # workspace_id → what was stored with the key
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._flaky_failures = 0
        self._mode = "normal"
        self.mode = mode

        self._server = _Server((host, port), _Handler)
        self._server.standin = self
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            # The handshake happens in the handler's thread, so a silent client cannot stall
            # the accept loop.
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        bound_host, bound_port = self._server.server_address[:2]
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://{bound_host}:{bound_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="provisioner-standin",
            daemon=True,
        )

    # -- mode ------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown mode {value!r}; one of {', '.join(MODES)}")
        with self._lock:
            self._mode = value
            self._flaky_failures = 0  # "the first N requests" count from the switch

    # -- what tests look at ------------------------------------------------------------------

    def key_requests(self) -> list[Received]:
        """The requests made to POST /api/v1/keys/workspace (what a client's attempts were)."""
        return [r for r in list(self.requests) if r.path == KEY_PATH]

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> Standin:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop at once, also with requests hanging or bodies streaming."""
        self._stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
            threads = list(self._handler_threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        for thread in threads:
            thread.join(timeout=2.0)

    def __enter__(self) -> Standin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals used by the handler -------------------------------------------------------

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
                self._handler_threads.add(threading.current_thread())
            else:
                self._connections.discard(conn)
                self._handler_threads.discard(threading.current_thread())

    def _take_flaky_failure(self) -> str | None:
        """In flaky mode: how this request should fail ("502"/"reset"), or None."""
        with self._lock:
            if self._mode != "flaky" or self._flaky_failures >= self.fail_first:
                return None
            number = self._flaky_failures
            self._flaky_failures += 1
        if self.fail_with == "alternate":
            return "502" if number % 2 == 0 else "reset"
        return self.fail_with

    def _issue(self, body: dict[str, Any]) -> tuple[int, Issued]:
        """Make a key for a new workspace (201) or give back its old one (200)."""
        workspace_id = body["workspace_id"]
        with self._lock:
            known = self.issued.get(workspace_id)
            if known is not None:
                return 200, known  # the stored level wins: anti-downgrade
            level = body.get("enforcement_level")
            action = body.get("guardrail_action")
            name = body.get("workspace_name")
            issued = Issued(
                key="sk-" + _secrets.token_urlsafe(24),  # 32 URL-safe characters
                workspace_id=workspace_id,
                username=body["username"],
                workspace_name=name if isinstance(name, str) else "",
                enforcement_level=level if level in LEVELS else "standard",
                guardrail_action=action if isinstance(action, str) and action else "block",
            )
            self.issued[workspace_id] = issued
            self.keys[workspace_id] = issued.key
            return 201, issued

    def _find_key(self, key: str) -> Issued | None:
        with self._lock:
            for issued in self.issued.values():
                if hmac.compare_digest(issued.key.encode(), key.encode()):
                    return issued
        return None

    def _key_info(self, issued: Issued) -> dict[str, Any]:
        """LiteLLM's /key/info answer for the key, as the provisioner passes it through."""
        now = datetime.now(timezone.utc)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return {
            "key": issued.key,
            "info": {
                "status": "active",
                "key_alias": f"workspace-{issued.workspace_id}",
                "key_name": f"sk-...{issued.key[-4:]}",
                "spend": 0.0,
                "max_budget": self.budget,
                "budget_duration": "1d",
                "budget_reset_at": midnight.isoformat(),
                "models": [],
                "tpm_limit": 100000,
                "rpm_limit": 60,
                "max_parallel_requests": None,
                "metadata": {
                    "workspace_id": issued.workspace_id,
                    "workspace_name": issued.workspace_name,
                    "username": issued.username,
                    "enforcement_level": issued.enforcement_level,
                    "guardrail_action": issued.guardrail_action,
                },
                "blocked": None,
                "expires": (issued.created_at + timedelta(days=30)).isoformat(),
                "last_active": None,
                "user_id": issued.username,
                "team_id": None,
                "created_at": issued.created_at.isoformat(),
                "model_max_budget": {},
            },
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    standin: Standin

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-answer (huge, hang, stop) is expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], OSError) or self.standin._stopping.is_set():
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server behind a proxy would
    server_version = "key-provisioner-standin/1"
    timeout = 30  # an idle keep-alive connection is dropped after this
    server: _Server

    # -- plumbing --------------------------------------------------------------------------

    def setup(self) -> None:
        self.standin = self.server.standin
        self.standin._track(self.request, add=True)
        # Headers and body go out in two writes; without this, Nagle's algorithm and delayed
        # ACKs add 40 ms to every answer on a kept-alive connection.
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            try:
                self.request.do_handshake()
            except OSError:  # e.g. the client does not trust our certificate: end quietly
                self.standin._track(self.request, add=False)
                raise
        super().setup()

    def finish(self) -> None:
        try:
            with contextlib.suppress(OSError):
                super().finish()
        finally:
            self.standin._track(self.request, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: tests look at .requests instead

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def do_PUT(self) -> None:  # noqa: N802
        self._serve()

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve()

    # -- one request -------------------------------------------------------------------------

    def _serve(self) -> None:
        standin = self.standin
        raw = self._read_body()
        path = self.path.split("?", 1)[0]
        headers = {name.lower(): value for name, value in self.headers.items()}
        standin.requests.append(Received(path, headers, _parse(raw)))

        mode = standin.mode
        if mode == "hang":
            standin._stopping.wait()
            self.close_connection = True
            return
        if mode == "reset":
            self._reset()
            return
        if mode == "slow" and standin._stopping.wait(standin.delay):
            self.close_connection = True
            return

        if path == KEY_PATH:
            if self.command != "POST":
                self._json(405, {"error": "method not allowed"})
                return
            self._key_request(raw)
        elif path == INFO_PATH and self.command == "GET":
            self._info_request()
        elif path == "/health" and self.command == "GET":
            self._json(200, {"status": "ok"})
        elif path == "/health/ready" and self.command == "GET":
            if mode == "fail502":
                self._json(503, {"status": "degraded", "litellm": False})
            else:
                self._json(200, {"status": "ok", "litellm": True})
        else:
            self._json(404, {"error": "not found"})

    def _key_request(self, raw: bytes) -> None:
        standin = self.standin
        mode = standin.mode
        failure = standin._take_flaky_failure()
        if failure == "reset":
            self._reset()
            return
        if failure == "502":
            self._json(502, {"error": "Failed to generate key: upstream connect error"})
            return
        if mode in _GARBAGE_MODES:
            self._garbage(mode)
            return
        if not self._bearer_is(standin.secret):
            self._json(401, {"error": "unauthorized"})
            return
        body = _parse(raw)
        if not (
            isinstance(body, dict)
            and isinstance(body.get("workspace_id"), str)
            and body["workspace_id"]
            and isinstance(body.get("username"), str)
            and body["username"]
        ):
            self._json(400, {"error": "workspace_id and username are required"})
            return
        if mode == "fail500":
            self._send(500, "text/plain; charset=utf-8", b"Internal Server Error")
            return
        if mode == "fail502":
            self._json(
                502,
                {"error": "Failed to generate key: litellm returned 500 Internal Server Error"},
            )
            return
        status, issued = standin._issue(body)
        self._json(status, {"key": issued.key, "reused": status == 200})

    def _info_request(self) -> None:
        key = self._bearer()
        if not key:
            self._json(401, _litellm_error("Authentication Error, No api key passed in.", 401))
            return
        issued = self.standin._find_key(key)
        if issued is None:
            message = "Authentication Error, Invalid proxy server token passed."
            self._json(401, _litellm_error(message, 401))
            return
        self._json(200, self.standin._key_info(issued))

    def _garbage(self, mode: str) -> None:
        if mode == "garbage":
            self._send(200, "text/html; charset=utf-8", b"<html>oops</html>")
        elif mode == "badjson":
            self._send(200, "application/json", b"{not json")
        elif mode == "nokey":
            self._json(201, {"reused": False})
        elif mode == "emptykey":
            self._json(201, {"key": "", "reused": False})
        else:
            self._huge()

    def _huge(self) -> None:
        total = self.standin.huge_bytes
        chunk = b" " * 65536
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        chunked = not self.standin.huge_content_length
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(total))
        self.end_headers()
        self.close_connection = True
        sent = 0
        try:
            while sent < total and not self.standin._stopping.is_set():
                piece = chunk[: min(len(chunk), total - sent)]
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    self.wfile.write(piece)
                sent += len(piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client stopped reading, as it should

    # -- helpers -----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = self.headers.get("Content-Length", "0")
        return self.rfile.read(int(length)) if length.isdigit() and int(length) > 0 else b""

    def _bearer(self) -> str:
        value = self.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def _bearer_is(self, expected: str) -> bool:
        return hmac.compare_digest(self._bearer().encode(), expected.encode())

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset, no answer at all."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.request.close()


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


def _litellm_error(message: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": "auth_error", "param": "None", "code": str(code)}}


@contextlib.contextmanager
def run_provisioner(
    mode: str = "normal", secret: str = "test-secret", **opts: Any
) -> Iterator[Standin]:
    """Run a stand-in on 127.0.0.1 (a free port) for the `with` block; see `Standin` for opts."""
    standin = Standin(mode, secret, **opts)
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.standins.provisioner",
        description="Loopback stand-in of the key provisioner (tests and benchmarks only).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--secret", default="test-secret")
    parser.add_argument("--fail-first", type=int, default=2)
    parser.add_argument("--fail-with", choices=("502", "reset", "alternate"), default="502")
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--huge-bytes", type=int, default=20 * 1024 * 1024)
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    standin = Standin(
        args.mode,
        args.secret,
        host=args.host,
        port=args.port,
        fail_first=args.fail_first,
        fail_with=args.fail_with,
        delay=args.delay,
        huge_bytes=args.huge_bytes,
    )
    with standin:
        print(f"LISTENING {standin.url}", flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
