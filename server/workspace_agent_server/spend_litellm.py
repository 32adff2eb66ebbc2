"""LiteLLM's admin API as the drift server reads it: `/key/list` and `/spend/logs/v2`.

Spend comes from `/spend/logs/v2` (paged, with a time window), not `/spend/logs?summarize=false`,
which returns at most the 10,000 newest rows of a range (header `x-litellm-spend-logs-truncated`).
Every request has a deadline and a body cap (LiteLLM is trusted, but a misconfigured URL or a
huge fleet must not exhaust the server), every failure becomes one sentence (`LiteLLMError`),
and the master key only ever travels in the Authorization header: it is never part of a message.
Shapes are LiteLLM 1.108.7's with a database (tests/server/test_spend_litellm.py checks them
against the real proxy).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

KEY_PAGE_SIZE = 100  # /key/list refuses more per page
LOGS_PAGE_SIZE = 1000  # /spend/logs/v2 refuses more per page
LOGS_WINDOW_CAP = 10_000  # /spend/logs/v2 counts at most this many rows per time window
_LITELLM_TIME = "%Y-%m-%d %H:%M:%S"  # UTC; /spend/logs/v2 takes this (or a bare date)


class LiteLLMError(Exception):
    """LiteLLM could not be read; the message says why (no secret in it)."""


@dataclass(frozen=True)
class KeyRow:
    """The facts of one virtual key that the spend pages show."""

    token: str  # LiteLLM's hash of the key: the spend logs' api_key
    key_alias: str | None
    key_name: str | None
    workspace_id: str | None
    workspace_name: str | None
    owner: str | None
    template_name: str | None
    level: str | None
    generation: int | None
    spend: float
    max_budget: float | None
    budget_duration: str | None
    budget_reset_at: datetime | None
    created_at: datetime | None
    expires_at: datetime | None
    last_active: datetime | None  # LiteLLM's own "last used"
    blocked: bool


@dataclass(frozen=True)
class LogRow:
    """One request of LiteLLM's spend logs, as much as the totals need."""

    request_id: str
    token: str
    model_group: str
    spend: float
    start: datetime
    prompt_tokens: int
    completion_tokens: int


class LiteLLM:
    """One LiteLLM proxy, read with the master key."""

    def __init__(
        self,
        url: str,
        master_key: SecretStr,
        timeout_s: float,
        max_body_bytes: int,
        max_pages: int,
    ) -> None:
        self.url = url.rstrip("/")
        self._key = master_key
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.max_pages = max_pages

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(self.timeout_s),
            headers={"Authorization": f"Bearer {self._key.get_secret_value()}"},
            follow_redirects=False,
        )

    async def get_json(self, client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> Any:
        """GET `path`; its JSON body, read up to the cap. Raises LiteLLMError with a sentence."""
        where = f"LiteLLM at {self.url} ({path})"
        try:
            async with client.stream("GET", path, params=params) as resp:
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_body_bytes:
                    raise LiteLLMError(self._too_big(where))
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        raise LiteLLMError(self._too_big(where))
                    chunks.append(chunk)
                status = resp.status_code
        except httpx.TimeoutException:
            raise LiteLLMError(
                f"{where} did not answer within {self.timeout_s:g} s (DRIFT_SPEND_TIMEOUT_S)"
            ) from None
        except httpx.HTTPError as exc:
            raise LiteLLMError(f"{where} cannot be reached: {type(exc).__name__}") from None
        body = b"".join(chunks)
        if status in (401, 403):
            raise LiteLLMError(
                f"{where} refused the master key ({status}): check DRIFT_LITELLM_MASTER_KEY"
            )
        if status != 200:
            raise LiteLLMError(f"{where} answered {status}: {_error_text(body, self._key)}")
        try:
            return json.loads(body)
        except ValueError:
            raise LiteLLMError(f"{where} answered 200 with a body that is not JSON") from None

    def _too_big(self, where: str) -> str:
        return (
            f"{where} sent more than {self.max_body_bytes:,} bytes "
            "(DRIFT_SPEND_MAX_BODY_BYTES): raise it for a fleet this size"
        )

    async def keys(self, client: httpx.AsyncClient) -> list[KeyRow]:
        """Every key, page by page (at most `max_pages` pages)."""
        found: dict[str, KeyRow] = {}
        for page in range(1, self.max_pages + 1):
            body = await self.get_json(
                client,
                "/key/list",
                {
                    "page": page,
                    "size": KEY_PAGE_SIZE,
                    "return_full_object": "true",
                    "sort_by": "token",  # a stable order while pages are read
                    "sort_order": "asc",
                },
            )
            if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
                raise LiteLLMError(f"LiteLLM at {self.url} (/key/list) answered an unknown shape")
            found.update((k.token, k) for k in map(key_row, body["keys"]) if k is not None)
            total_pages = body.get("total_pages")
            if not body["keys"] or not isinstance(total_pages, int) or page >= total_pages:
                return list(found.values())
        raise LiteLLMError(
            f"LiteLLM at {self.url} has more than {self.max_pages * KEY_PAGE_SIZE:,} keys "
            "(DRIFT_SPEND_MAX_PAGES pages of 100): raise it"
        )

    async def spend_logs(self, client: httpx.AsyncClient, day: date) -> list[LogRow]:
        """The requests of one UTC day, each once.

        `/spend/logs/v2` pages (up to 1,000 rows) through a time window but counts at most
        10,000 rows per window (`total_is_capped`), and `/spend/logs?summarize=false` silently
        stops at 10,000: so a capped window is split in halves until each fits. Both ends of a
        window are inclusive (to the second), so windows share their edges and a row on an edge
        comes twice: rows are kept by LiteLLM's `request_id`, once."""
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        found: dict[str, LogRow] = {}
        pending = [(start, start + timedelta(days=1))]
        while pending:
            begin, end = pending.pop()
            if not await self._window(client, begin, end, found, day):
                if end - begin <= timedelta(seconds=1):
                    raise LiteLLMError(
                        f"LiteLLM at {self.url} logged more than {LOGS_WINDOW_CAP:,} requests in "
                        f"the second after {begin.isoformat()}: the spend pull cannot page them"
                    )
                middle = begin + timedelta(seconds=int((end - begin).total_seconds()) // 2)
                pending += [(middle, end), (begin, middle)]
        return list(found.values())

    async def _window(
        self,
        client: httpx.AsyncClient,
        begin: datetime,
        end: datetime,
        found: dict[str, LogRow],
        day: date,
    ) -> bool:
        """Rows of [begin, end] into `found`; False (nothing kept) when LiteLLM capped the count."""
        rows: dict[str, LogRow] = {}
        for page in range(1, LOGS_WINDOW_CAP // LOGS_PAGE_SIZE + 2):
            body = await self.get_json(
                client,
                "/spend/logs/v2",
                {
                    "start_date": begin.strftime(_LITELLM_TIME),
                    "end_date": end.strftime(_LITELLM_TIME),
                    "page": page,
                    "page_size": LOGS_PAGE_SIZE,
                    "sort_by": "startTime",
                    "sort_order": "asc",
                },
            )
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise LiteLLMError(
                    f"LiteLLM at {self.url} (/spend/logs/v2) answered an unknown shape"
                )
            if body.get("total_is_capped") is True:
                return False
            for row in map(log_row, data):
                if row is not None and row.start.date() == day:
                    rows[row.request_id or f"{row.token}:{row.start.isoformat()}"] = row
            total_pages = body.get("total_pages")
            if not data or not isinstance(total_pages, int) or page >= total_pages:
                found.update(rows)
                return True
        return False


def _error_text(body: bytes, key: SecretStr) -> str:
    """LiteLLM's error message, short, without the master key should it ever echo it."""
    try:
        parsed = json.loads(body)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        message = error.get("message") if isinstance(error, dict) else parsed.get("detail")
        text = str(message if message is not None else parsed)
    except (ValueError, AttributeError):
        text = body.decode("utf-8", "replace")
    return redact(" ".join(text.split())[:300], key) or "(no message)"


def redact(text: str, key: SecretStr | None) -> str:
    secret = key.get_secret_value() if key is not None else ""
    return text.replace(secret, "sk-…") if secret else text


def _text(value: Any, limit: int = 200) -> str | None:
    if value is None:
        return None
    text = str(value).replace("\x00", "")
    return text[:limit] or None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_time(value: Any) -> datetime | None:
    """LiteLLM's times (ISO 8601, with or without a zone: UTC) → aware UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)  # 3.11 reads a trailing Z
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _metadata(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def key_row(raw: Any) -> KeyRow | None:
    """One /key/list entry (a full key object) → KeyRow; None for anything else."""
    if not isinstance(raw, dict):
        return None
    token = raw.get("token")
    if not isinstance(token, str) or not token or len(token) > 64:
        return None
    meta = _metadata(raw.get("metadata"))
    generation = meta.get("generation")
    return KeyRow(
        token=token,
        key_alias=_text(raw.get("key_alias")),
        key_name=_text(raw.get("key_name"), 64),
        workspace_id=_text(meta.get("coder_workspace")),
        workspace_name=_text(meta.get("workspace_name")),
        owner=_text(meta.get("workspace_owner") or raw.get("user_id")),
        template_name=_text(meta.get("template_name")),
        level=_text(meta.get("enforcement_level"), 50),
        generation=generation
        if isinstance(generation, int) and not isinstance(generation, bool)
        else None,
        spend=_number(raw.get("spend")) or 0.0,
        max_budget=_number(raw.get("max_budget")),
        budget_duration=_text(raw.get("budget_duration"), 50),
        budget_reset_at=parse_time(raw.get("budget_reset_at")),
        created_at=parse_time(raw.get("created_at")),
        expires_at=parse_time(raw.get("expires")),
        last_active=parse_time(raw.get("last_active")),
        blocked=raw.get("blocked") is True,
    )


def log_row(raw: Any) -> LogRow | None:
    """One /spend/logs row (summarize=false) → LogRow; None when it lacks what totals need."""
    if not isinstance(raw, dict):
        return None
    token, start = raw.get("api_key"), parse_time(raw.get("startTime"))
    spend = _number(raw.get("spend"))
    if not isinstance(token, str) or start is None or spend is None:
        return None
    group = _text(raw.get("model_group")) or _text(raw.get("model")) or "(none)"
    return LogRow(
        request_id=_text(raw.get("request_id"), 200) or "",
        token=token[:64],
        model_group=group,
        spend=spend,
        start=start,
        prompt_tokens=int(_number(raw.get("prompt_tokens")) or 0),
        completion_tokens=int(_number(raw.get("completion_tokens")) or 0),
    )


def days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)
