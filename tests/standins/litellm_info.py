"""A loopback stand-in for LiteLLM's database-backed info routes, for tests only.

A real LiteLLM proxy answers `/key/info` and `/user/info` only with its PostgreSQL database,
which cannot run beside it here; these are its success bodies, built from the shapes in
shared/reference/litellm.md (LiteLLM 1.108.7's source), and its error bodies as measured:

    GET /key/info                  {"key", "info": {status, key_alias, spend, max_budget, ...}}
    GET /user/info                 {"user_id", "user_info": {...}, "keys": [rows], "teams": []}
    GET /spend/logs?api_key=<sha256>&start_date&end_date
                                   daily summaries [{"startTime", "spend", "models": {...}}], or
                                   401 "Only proxy admin can ..." as a non-admin key gets
    GET /api/v1/keys/info          the key provisioner's route: /user/info passed through

    with run_litellm_info({"sk-...": Account(spend=2.5)}) as info:
        info.url; info.mode = "nodb"; info.requests[-1].path

Modes: normal; nodb (info routes: 500 "Database not connected"); slow (`delay` s, then normal).
A key whose account has `budget_error` gets LiteLLM's 422 budget_exceeded on every route; an
unknown key gets 401 like LiteLLM with a database; an account with `expires` in the past gets
LiteLLM's 401 expired-key error.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from tests.standins._json_http import send_json

MODES = ("normal", "nodb", "slow")
NO_DB = (
    "Database not connected. Connect a database to your proxy - "
    "https://docs.litellm.ai/docs/simple_proxy#managing-auth---virtual-keys"
)


def _next_midnight() -> datetime:
    now = datetime.now(UTC)
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class Account:
    """One key's row in LiteLLM's database (and its user's)."""

    spend: float = 0.0
    max_budget: float | None = 10.0
    budget_duration: str | None = "1d"
    budget_reset_at: datetime | None = field(default_factory=_next_midnight)
    rpm_limit: int | None = 60
    tpm_limit: int | None = 100000
    models: list[str] = field(default_factory=list)
    level: str | None = "standard"
    key_alias: str = "workspace-ws-1"
    user_id: str | None = "alice"
    expires: datetime | None = field(default_factory=lambda: datetime.now(UTC) + timedelta(days=30))
    status: str = "active"
    blocked: bool | None = None
    model_spend: dict[str, float] = field(default_factory=dict)
    user_spend: float = 3.1
    user_max_budget: float | None = 20.0
    budget_error: bool = False  # every route answers 422 budget_exceeded (custom auth's refusal)
    spend_logs: list[dict[str, Any]] | None = None  # None: /spend/logs is admin-only (401)


class Received(NamedTuple):
    path: str
    query: dict[str, list[str]]
    authorization: str


def token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _error(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": "None", "code": str(code)}}


class LitellmInfo:
    """The running stand-in."""

    def __init__(self, accounts: Mapping[str, Account], mode: str = "normal", delay: float = 2.0) -> None:
        self.accounts = dict(accounts)
        self.mode = mode
        self.delay = delay
        self.requests: list[Received] = []
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.standin = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> LitellmInfo:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    # -- bodies ----------------------------------------------------------------------------

    def key_row(self, key: str, account: Account) -> dict[str, Any]:
        return {
            "token": token_hash(key),
            "key_name": f"sk-...{key[-4:]}",
            "key_alias": account.key_alias,
            "status": account.status,
            "spend": account.spend,
            "max_budget": account.max_budget,
            "budget_duration": account.budget_duration,
            "budget_reset_at": _iso(account.budget_reset_at),
            "models": list(account.models),
            "tpm_limit": account.tpm_limit,
            "rpm_limit": account.rpm_limit,
            "max_parallel_requests": None,
            "metadata": {"workspace_id": "ws-1", "enforcement_level": account.level} if account.level else {},
            "blocked": account.blocked,
            "expires": _iso(account.expires),
            "last_active": None,
            "user_id": account.user_id,
            "team_id": None,
            "created_at": _iso(datetime.now(UTC) - timedelta(days=1)),
            "model_spend": dict(account.model_spend),
            "model_max_budget": {},
        }

    def key_info(self, key: str, account: Account) -> dict[str, Any]:
        return {"key": token_hash(key), "info": self.key_row(key, account)}

    def user_info(self, key: str, account: Account) -> dict[str, Any]:
        return {
            "user_id": account.user_id,
            "user_info": {
                "user_id": account.user_id,
                "spend": account.user_spend,
                "max_budget": account.user_max_budget,
                "models": [],
                "budget_duration": "30d",
                "budget_reset_at": _iso(datetime.now(UTC) + timedelta(days=12)),
                "tpm_limit": None,
                "rpm_limit": None,
                "user_role": "internal_user",
            },
            "keys": [
                {**self.key_row("sk-other-key-of-alice-0000", Account(spend=0.6)), "key_alias": "user-alice"},
                self.key_row(key, account),
            ],
            "teams": [],
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "litellm-info-standin/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        standin: LitellmInfo = self.server.standin  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        auth = self.headers.get("Authorization", "")
        standin.requests.append(Received(parts.path, query, auth))
        if standin.mode == "slow" and standin._stopping.wait(standin.delay):
            return
        key = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if not key:
            self._json(401, _error("Authentication Error, No api key passed in.", "auth_error", 401))
            return
        account = standin.accounts.get(key)
        if account is None:
            self._json(401, _error("Authentication Error, Invalid proxy server token passed.", "auth_error", 401))
            return
        if account.budget_error:
            message = f"Budget has been exceeded! Current cost: {account.spend}, Max budget: {account.max_budget}"
            self._json(422, {"error": {"message": message, "type": "budget_exceeded", "param": None, "code": "422"}})
            return
        now = datetime.now(UTC)
        if account.expires is not None and account.expires < now:
            message = f"Authentication Error - Expired Key. Key Expiry time {account.expires} and current time {now}"
            self._json(401, _error(message, "expired_key", 401))
            return
        if standin.mode == "nodb":
            self._json(500, {"error": {"message": NO_DB, "type": "internal_server_error", "param": None, "code": "500"}})
            return
        if parts.path == "/key/info":
            self._json(200, standin.key_info(key, account))
        elif parts.path in ("/user/info", "/api/v1/keys/info"):
            if account.user_id is None:
                self._json(404, _error("User not found", "not_found", 404))
            else:
                self._json(200, standin.user_info(key, account))
        elif parts.path == "/spend/logs":
            if account.spend_logs is None:
                message = (
                    "Authentication Error, Only proxy admin can be used to generate, delete, update info "
                    "for new keys/users/teams. Route=/spend/logs. Your role=unknown."
                )
                self._json(401, _error(message, "auth_error", 401))
            elif query.get("api_key") != [token_hash(key)]:
                self._json(200, [])
            else:
                self._json(200, account.spend_logs)
        else:
            self._json(404, {"detail": "Not Found"})

    def _json(self, status: int, payload: Any) -> None:
        send_json(self, status, payload)


@contextlib.contextmanager
def run_litellm_info(accounts: Mapping[str, Account], mode: str = "normal", delay: float = 2.0) -> Iterator[LitellmInfo]:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    standin = LitellmInfo(accounts, mode, delay).start()
    try:
        yield standin
    finally:
        standin.stop()
