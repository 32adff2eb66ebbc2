"""A loopback stand-in of LiteLLM's key-management routes (database-backed), for tests only.

Shapes from shared/reference/litellm.md and LiteLLM 1.108.7's key_management_endpoints.py:

  POST /key/generate   master key; body GenerateKeyRequest (key, key_alias, user_id, max_budget,
                       budget_duration, rpm_limit, tpm_limit, duration, metadata, models)
                       → 200 {"key", "key_alias", "key_name", "token": <sha256>, "expires",
                       "user_id", "metadata", ...}; a key alias in use → 400 (unique aliases);
                       a key value in use → 500 (the database's unique constraint)
  GET  /key/info       ?key=<key or its sha256>: master key (or that key) → 200 {"key", "info"},
                       unknown → 404 "Key not found in database"; without `key`: the bearer's
                       own key (401 when unknown, blocked or expired, as LiteLLM's auth does)
  POST /key/delete     master key; {"keys": [...]} or {"key_aliases": [...]}
  GET  /health/liveliness → 200 "I'm alive!"

Every error body is LiteLLM's {"error": {"message", "type", "param", "code"}}. `mode = "down"`
answers 503 to everything; paths in `failing` answer 503, paths in `unrouted` FastAPI's 404
{"detail": "Not Found"} (a route that LiteLLM, or a proxy in front of it, does not serve).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from tests.standins._json_http import read_body, send_json


def token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Received(NamedTuple):
    method: str
    target: str  # path and query as sent
    authorization: str
    body: Any


def _error(status: int, message: str, kind: str, param: str = "None") -> tuple[int, Any]:
    return status, {
        "error": {"message": message, "type": kind, "param": param, "code": str(status)}
    }


def _names_anywhere(value: Any, name: str) -> bool:
    """Whether `name` is a key of `value` or of any object nested in it."""
    if isinstance(value, dict):
        return name in value or any(_names_anywhere(v, name) for v in value.values())
    if isinstance(value, list):
        return any(_names_anywhere(v, name) for v in value)
    return False


def _seconds(duration: str) -> int:
    number, unit = int(duration[:-1]), duration[-1]
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


class LitellmKeys:
    def __init__(self, master_key: str = "sk-master-Vb8Qz3nL5") -> None:
        self.master_key = master_key
        self.mode = "normal"
        self.failing: set[str] = set()  # paths answered 503 (one LiteLLM call failing)
        # Paths answered as a route nobody serves (FastAPI's 404 {"detail": "Not Found"}): a
        # LiteLLM without it, or a proxy in front of LiteLLM that does not pass it on.
        self.unrouted: set[str] = set()
        self.lost: set[str] = set()  # paths done, but answered 503 (the answer lost on the way)
        self.rows: dict[str, dict[str, Any]] = {}  # token hash → row
        # 1.108.7's LiteLLM_DeletedVerificationToken: /key/delete moves a row here, and /key/info
        # still answers it, with status "deleted".
        self.archive: dict[str, dict[str, Any]] = {}
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # -- what tests do and look at ------------------------------------------------------------

    def row_for_alias(self, alias: str) -> dict[str, Any] | None:
        with self._lock:
            return next((r for r in self.rows.values() if r["key_alias"] == alias), None)

    def delete_alias(self, alias: str) -> None:
        with self._lock:
            for token, row in list(self.rows.items()):
                if row["key_alias"] == alias:
                    self.archive[token] = self.rows.pop(token)  # what an admin's /key/delete does

    def expire_alias(self, alias: str) -> None:
        with self._lock:
            for row in self.rows.values():
                if row["key_alias"] == alias:
                    row["expires"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()

    def block_alias(self, alias: str) -> None:
        with self._lock:
            for row in self.rows.values():
                if row["key_alias"] == alias:
                    row["blocked"] = True

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> LitellmKeys:
        server = ThreadingHTTPServer(("127.0.0.1", self._port), _Handler)
        server.daemon_threads = True
        server.standin = self  # type: ignore[attr-defined]
        self._port = server.server_address[1]
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- answers ------------------------------------------------------------------------------

    def answer(self, method: str, target: str, authorization: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(Received(method, target, authorization, body))
            if self.mode == "down":
                return 503, {
                    "error": {
                        "message": "Service Unavailable",
                        "type": "None",
                        "param": "None",
                        "code": "503",
                    }
                }
            parts = urlsplit(target)
            if parts.path in self.unrouted:
                return 404, {"detail": "Not Found"}
            if parts.path in self.failing:
                return 503, {"error": {"message": "Service Unavailable", "type": "None",
                                       "param": "None", "code": "503"}}
            bearer = authorization[7:] if authorization.startswith("Bearer ") else ""
            is_master = bool(bearer) and hmac.compare_digest(
                bearer.encode(), self.master_key.encode()
            )
            if parts.path == "/health/liveliness" and method == "GET":
                return 200, "I'm alive!"
            if not bearer:
                return _error(401, "Authentication Error, No api key passed in.", "auth_error")
            if parts.path == "/key/generate" and method == "POST":
                made = self._generate(is_master, body)
                if parts.path in self.lost and made[0] == 200:
                    return 503, {"error": {"message": "upstream connect error", "type": "None",
                                           "param": "None", "code": "503"}}
                return made
            if parts.path == "/key/info" and method == "GET":
                return self._info(is_master, bearer, parse_qs(parts.query).get("key", [None])[0])
            if parts.path == "/key/delete" and method == "POST":
                return self._delete(is_master, body)
            if parts.path == "/key/block" and method == "POST":
                return self._block(is_master, body)
            if parts.path == "/key/update" and method == "POST":
                return self._update(is_master, body)
            return _error(404, "Not Found", "not_found_error")

    def _usable(self, bearer: str) -> dict[str, Any] | None:
        row = self.rows.get(token_hash(bearer))
        if row is None or row.get("blocked"):
            return None
        expires = row.get("expires")
        if expires and datetime.fromisoformat(expires) < datetime.now(UTC):
            return None
        return row

    def _generate(self, is_master: bool, body: Any) -> tuple[int, Any]:
        if not is_master:
            return _error(
                401, "Authentication Error, Only proxy admin can generate keys", "auth_error"
            )
        if not isinstance(body, dict):
            return _error(422, "body must be a JSON object", "invalid_request_error")
        if _names_anywhere(body, "workspace_id"):
            # What the real database-backed proxy answers (1.108.7, measured).
            return _error(401, "workspace_id is not allowed in request body", "auth_error")
        key = body.get("key") or "sk-" + secrets.token_urlsafe(16)
        alias = body.get("key_alias")
        if alias and any(r["key_alias"] == alias for r in self.rows.values()):
            return _error(
                400,
                f"Unique key aliases across all keys are required. Key alias={alias} already exists",
                "bad_request_error",
                "key_alias",
            )
        token = token_hash(key)
        if token in self.rows:
            return _error(
                500,
                "Internal Server Error, Unique constraint failed on the fields: (`token`)",
                "internal_server_error",
            )
        now = datetime.now(UTC)
        duration = body.get("duration")
        expires = (now + timedelta(seconds=_seconds(duration))).isoformat() if duration else None
        row = {
            "key_alias": alias,
            "key_name": f"sk-...{key[-4:]}",
            "spend": 0.0,
            "max_budget": body.get("max_budget"),
            "budget_duration": body.get("budget_duration"),
            "budget_reset_at": (now + timedelta(days=1)).isoformat()
            if body.get("budget_duration")
            else None,
            "models": body.get("models") or [],
            "tpm_limit": body.get("tpm_limit"),
            "rpm_limit": body.get("rpm_limit"),
            "metadata": body.get("metadata") or {},
            "blocked": None,
            "expires": expires,
            "user_id": body.get("user_id"),
            "team_id": None,
            "created_at": now.isoformat(),
            "last_active": None,
        }
        self.rows[token] = row
        return 200, {
            "key": key,
            "token": token,
            **{
                k: row[k]
                for k in (
                    "key_alias",
                    "key_name",
                    "expires",
                    "user_id",
                    "metadata",
                    "max_budget",
                    "models",
                    "rpm_limit",
                    "tpm_limit",
                    "budget_duration",
                )
            },
        }

    def _info(self, is_master: bool, bearer: str, key: str | None) -> tuple[int, Any]:
        if key is None:  # the caller's own key
            row = self._usable(bearer)
            if row is None:
                return _error(
                    401, "Authentication Error, Invalid proxy server token passed.", "auth_error"
                )
            return 200, {"key": bearer, "info": dict(row)}
        if not is_master and self._usable(bearer) is None:
            return _error(
                401, "Authentication Error, Invalid proxy server token passed.", "auth_error"
            )
        token = token_hash(key) if key.startswith("sk-") else key
        row = self.rows.get(token)
        if row is None and token in self.archive:
            row = self.archive[token] | {"status": "deleted"}
        if row is None:
            return _error(404, "Key not found in database", "not_found_error", "key")
        if not is_master and token != token_hash(bearer):
            return 403, {"detail": "You are not allowed to access this key's info. Your role=None"}
        return 200, {"key": key, "info": dict(row)}

    def _delete(self, is_master: bool, body: Any) -> tuple[int, Any]:
        if not is_master:
            return _error(
                401, "Authentication Error, only proxy admin can delete keys", "auth_error"
            )
        body = body if isinstance(body, dict) else {}
        deleted = []
        for key in body.get("keys") or []:
            token = token_hash(key) if key.startswith("sk-") else key
            if (gone := self.rows.pop(token, None)) is not None:
                self.archive[token] = gone | {"deleted_at": datetime.now(UTC).isoformat()}
                deleted.append(key)
        for alias in body.get("key_aliases") or []:
            for token, row in list(self.rows.items()):
                if row["key_alias"] == alias:
                    self.archive[token] = self.rows.pop(token) | {"deleted_at": datetime.now(UTC).isoformat()}
                    deleted.append(alias)
        return 200, {"deleted_keys": deleted}


    def _row_of(self, body: Any) -> tuple[str, dict[str, Any]] | None:
        key = body.get("key") if isinstance(body, dict) else None
        if not isinstance(key, str):
            return None
        token = token_hash(key) if key.startswith("sk-") else key
        row = self.rows.get(token)
        return (token, row) if row is not None else None

    def _block(self, is_master: bool, body: Any) -> tuple[int, Any]:
        """LiteLLM's /key/block: `blocked` set on the row, which stays (with its spend)."""
        if not is_master:
            return _error(401, "Authentication Error, only proxy admin can block keys", "auth_error")
        found = self._row_of(body)
        if found is None:
            return _error(404, "Key not found", "not_found_error", "key")
        found[1]["blocked"] = True
        return 200, {"token": found[0], **found[1]}

    def _update(self, is_master: bool, body: Any) -> tuple[int, Any]:
        """LiteLLM's /key/update, for the fields the provisioner changes (the alias stays unique)."""
        if not is_master:
            return _error(401, "Authentication Error, only proxy admin can update keys", "auth_error")
        found = self._row_of(body)
        if found is None:
            return _error(404, "Key not found", "not_found_error", "key")
        alias = body.get("key_alias")
        if alias and any(r["key_alias"] == alias for t, r in self.rows.items() if t != found[0]):
            return _error(400, f"Unique key aliases across all keys are required. Key alias={alias} "
                          "already exists", "bad_request_error", "key_alias")
        if alias:
            found[1]["key_alias"] = alias
        return 200, {"key": body["key"], **found[1]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self, method: str) -> None:
        standin: LitellmKeys = self.server.standin  # type: ignore[attr-defined]
        body = read_body(self)
        status, payload = standin.answer(
            method, self.path, self.headers.get("Authorization", ""), body
        )
        send_json(self, status, payload)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


@contextlib.contextmanager
def run_litellm_keys(master_key: str = "sk-master-Vb8Qz3nL5") -> Iterator[LitellmKeys]:
    standin = LitellmKeys(master_key).start()
    try:
        yield standin
    finally:
        standin.stop()
