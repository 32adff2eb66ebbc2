"""ai-usage: what this workspace's key has spent, what is left, when it resets, and its limits.

The facts come from one source, named in the output: LiteLLM itself (`/key/info` for the key,
`/user/info` for its user) or the key provisioner's `/api/v1/keys/info`, which passes LiteLLM's
answer through (its /user/info or /key/info shape; both are understood). Parsing is pure
(`parse_*`: body in, values out) so every shape is tested without a server. `Usage.to_json` is
the stable object `ai-usage --json` prints (docs/ai-usage.md); it is built here, never LiteLLM's
raw body.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from workspace_agent import gateway
from workspace_agent.config import ENFORCEMENT_LEVELS
from workspace_agent.errors import EXIT_BAD_ANSWER, EXIT_BUDGET, AgentError
from workspace_agent.gateway import Endpoint
from workspace_agent.money import money
from workspace_agent.redact import mask, redact

SCHEMA = "workspace-agent.ai-usage/1"
HOOK_FALLBACK_LEVEL = "design-first"  # what the gateway's hook applies for an unknown level

SourceName = Literal["litellm", "provisioner"]


# ---------------------------------------------------------------------------------------------
# The values


@dataclass(frozen=True)
class Budget:
    spend: float | None
    max_budget: float | None
    duration: str | None  # LiteLLM's budget_duration, e.g. "1d"; None: the budget never resets
    resets_at: datetime | None

    @property
    def left(self) -> float | None:
        if self.max_budget is None or self.spend is None:
            return None
        return max(self.max_budget - self.spend, 0.0)

    @property
    def left_fraction(self) -> float | None:
        if self.left is None or not self.max_budget or self.max_budget <= 0:
            return None
        return min(self.left / self.max_budget, 1.0)

    @property
    def exhausted(self) -> bool:
        return self.max_budget is not None and self.spend is not None and self.spend >= self.max_budget


@dataclass(frozen=True)
class KeyState:
    alias: str | None
    status: str  # active | expired | revoked | blocked | deleted | unknown
    expires_at: datetime | None
    created_at: datetime | None
    last_active: datetime | None
    user_id: str | None
    models: tuple[str, ...]  # empty: every model the gateway offers
    rpm_limit: int | None
    tpm_limit: int | None
    level: str | None  # enforcement_level in the key's metadata, as stored
    model_spend: dict[str, float] = field(default_factory=dict)
    # Set by the hardened key provisioner (issue 18): which generation the key is, and when a
    # level change rotated it in.
    generation: int | None = None
    rotated_at: str | None = None


@dataclass(frozen=True)
class UserState:
    user_id: str | None
    spend: float | None
    max_budget: float | None
    duration: str | None
    resets_at: datetime | None


@dataclass(frozen=True)
class ModelBreakdown:
    available: bool
    spend: dict[str, float] = field(default_factory=dict)
    source: str | None = None  # where the numbers came from
    since: date | None = None
    reason: str | None = None  # why there is none (one line)


@dataclass(frozen=True)
class Enforcement:
    key_level: str | None
    requested: str
    applied: str | None  # what the gateway's hook applies for this key (None: unknown)
    matches: bool | None  # None: the key's level is not known

    def explain(self) -> str:
        if self.matches is None and self.key_level is None and self.applied is None:
            return f"the key's level is unknown (no key info); this workspace asks for {self.requested}"
        if self.matches:
            return f"{self.key_level} (key metadata), as this workspace asks"
        if self.key_level is None:
            return (
                f"the key has no enforcement_level in its metadata: the gateway's hook applies "
                f"{self.applied}; this workspace asks for {self.requested}"
            )
        if self.key_level not in ENFORCEMENT_LEVELS:
            return (
                f"{self.key_level!r} in the key's metadata is not a level: the gateway's hook applies "
                f"{self.applied}; this workspace asks for {self.requested}"
            )
        return (
            f"{self.key_level} (key metadata) but this workspace asks for {self.requested}: a key keeps "
            f"the level it was made with, so the gateway applies {self.key_level}; ask an admin to "
            "rotate the key to change it"
        )


@dataclass
class Usage:
    source: SourceName
    source_url: str
    endpoints: list[str]
    masked_key: str
    key: KeyState | None
    budget: Budget
    enforcement: Enforcement
    user: UserState | None = None
    by_model: ModelBreakdown | None = None
    notes: list[str] = field(default_factory=list)
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def exit_code(self) -> int:
        return EXIT_BUDGET if self.budget.exhausted else 0

    def to_json(self) -> dict[str, Any]:
        """The stable object of `ai-usage --json` (docs/ai-usage.md); add fields, never rename."""
        b = self.budget
        k = self.key
        return {
            "schema": SCHEMA,
            "ok": not b.exhausted,
            "exit_code": self.exit_code,
            "fetched_at": _iso(self.fetched_at),
            "source": {"name": self.source, "url": self.source_url, "endpoints": list(self.endpoints)},
            "key": {
                "masked": self.masked_key,
                "alias": k.alias if k else None,
                "status": k.status if k else "unknown",
                "expires_at": _iso(k.expires_at) if k else None,
                "created_at": _iso(k.created_at) if k else None,
                "last_active": _iso(k.last_active) if k else None,
                "user_id": k.user_id if k else None,
                "models": list(k.models) if k else [],
                "generation": k.generation if k else None,
                "rotated_at": k.rotated_at if k else None,
            },
            "budget": {
                "currency": "USD",
                "spend": _money(b.spend),
                "max_budget": _money(b.max_budget),
                "left": _money(b.left),
                "left_fraction": round(b.left_fraction, 4) if b.left_fraction is not None else None,
                "duration": b.duration,
                "resets_at": _iso(b.resets_at),
                "exhausted": b.exhausted,
            },
            "limits": {"rpm": k.rpm_limit if k else None, "tpm": k.tpm_limit if k else None},
            "enforcement": {
                "key_level": self.enforcement.key_level,
                "requested": self.enforcement.requested,
                "applied": self.enforcement.applied,
                "matches": self.enforcement.matches,
            },
            "user": None
            if self.user is None
            else {
                "user_id": self.user.user_id,
                "spend": _money(self.user.spend),
                "max_budget": _money(self.user.max_budget),
                "duration": self.user.duration,
                "resets_at": _iso(self.user.resets_at),
            },
            "by_model": None
            if self.by_model is None
            else {
                "available": self.by_model.available,
                "source": self.by_model.source,
                "since": self.by_model.since.isoformat() if self.by_model.since else None,
                "spend": {m: _money(v) for m, v in sorted(self.by_model.spend.items())},
                "reason": self.by_model.reason,
            },
            "notes": list(self.notes),
            "error": None,
        }


def error_json(error: AgentError, source: SourceName | None, url: str | None, masked_key: str | None) -> dict[str, Any]:
    """`ai-usage --json` when it could not answer: same schema, `ok` false, the sentence and code."""
    return {
        "schema": SCHEMA,
        "ok": False,
        "exit_code": error.exit_code,
        "source": {"name": source, "url": url, "endpoints": []},
        "key": {"masked": masked_key},
        "error": {"kind": gateway.ERROR_KINDS.get(error.exit_code, "error"), "message": error.message},
    }




# ---------------------------------------------------------------------------------------------
# Parsing (pure)


def parse_time(value: Any) -> datetime | None:
    """LiteLLM's timestamps (ISO 8601, with or without zone; naive means UTC)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())  # 3.11 reads a trailing Z too
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def key_state(info: Mapping[str, Any], now: datetime) -> KeyState:
    """A key row (/key/info's `info`, or a row of /user/info's `keys`) → KeyState."""
    expires = parse_time(info.get("expires"))
    status = _text(info.get("status")) or "active"
    if info.get("blocked") is True:
        status = "blocked"
    elif expires is not None and expires <= now and status == "active":
        status = "expired"
    metadata = info.get("metadata")
    level = metadata.get("enforcement_level") if isinstance(metadata, dict) else None
    models = info.get("models")
    spend_by_model = info.get("model_spend")
    return KeyState(
        alias=_text(info.get("key_alias")),
        status=status,
        expires_at=expires,
        created_at=parse_time(info.get("created_at")),
        last_active=parse_time(info.get("last_active")),
        user_id=_text(info.get("user_id")),
        models=tuple(m for m in models if isinstance(m, str)) if isinstance(models, list) else (),
        rpm_limit=_int(info.get("rpm_limit")),
        tpm_limit=_int(info.get("tpm_limit")),
        level=level if isinstance(level, str) else (None if level is None else str(level)),
        model_spend=_spend_map(spend_by_model),
        generation=_generation(metadata),
        rotated_at=_rotated_at(metadata),
    )


def _rotated_at(metadata: Any) -> str | None:
    value = _text(metadata.get("rotated_at")) if isinstance(metadata, dict) else None
    return value[:40] if value else None


def _generation(metadata: Any) -> int | None:
    value = metadata.get("generation") if isinstance(metadata, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _spend_map(value: Any) -> dict[str, float]:
    """`{model: spend}` with only the numeric entries ({} for anything else)."""
    if not isinstance(value, dict):
        return {}
    numbers = {str(model): _number(spend) for model, spend in value.items()}
    return {model: spend for model, spend in numbers.items() if spend is not None}


def budget_of(info: Mapping[str, Any]) -> Budget:
    return Budget(
        spend=_number(info.get("spend")),
        max_budget=_number(info.get("max_budget")),
        duration=_text(info.get("budget_duration")),
        resets_at=parse_time(info.get("budget_reset_at")),
    )


def user_state(body: Mapping[str, Any]) -> UserState | None:
    info = body.get("user_info")
    if not isinstance(info, dict):
        return None
    return UserState(
        user_id=_text(body.get("user_id")) or _text(info.get("user_id")),
        spend=_number(info.get("spend")),
        max_budget=_number(info.get("max_budget")),
        duration=_text(info.get("budget_duration")),
        resets_at=parse_time(info.get("budget_reset_at")),
    )


def token_hash(key: str) -> str:
    """How LiteLLM stores a virtual key (sha256 hex): what /user/info's key rows carry as `token`."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def own_key_row(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """This key's row among /user/info's `keys`: by token hash, else by its `sk-...abcd` name."""
    rows = [r for r in body.get("keys") or [] if isinstance(r, dict)]
    wanted = token_hash(key)
    for row in rows:
        if row.get("token") == wanted:
            return row
    tail = key[-4:]
    named = [r for r in rows if isinstance(r.get("key_name"), str) and r["key_name"].endswith(tail)]
    return named[0] if len(named) == 1 else None


def key_info_of(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """The key's info from either shape: /key/info (`info`) or /user/info (`keys` rows)."""
    info = body.get("info", body.get("key_info"))
    if isinstance(info, dict):
        return info
    if "user_info" in body or "keys" in body:
        return own_key_row(body, key)
    return None


def enforcement_of(key: KeyState | None, requested: str) -> Enforcement:
    if key is None:
        return Enforcement(None, requested, None, None)
    applied = key.level if key.level in ENFORCEMENT_LEVELS else HOOK_FALLBACK_LEVEL
    return Enforcement(key.level, requested, applied, key.level == requested)


def duration_of(text: str | None) -> timedelta | None:
    """LiteLLM's budget_duration ("30s", "12h", "1d", "7d", "1w", "1mo") as a timedelta."""
    if not text:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(s|m|h|d|w|mo)\s*", text)
    if not match:
        return None
    amount, unit = int(match.group(1)), match.group(2)
    days = {"s": 1 / 86400, "m": 1 / 1440, "h": 1 / 24, "d": 1, "w": 7, "mo": 30}[unit]
    return timedelta(days=amount * days)


def window_start(budget: Budget, now: datetime) -> date:
    """The first day of the current budget window (today when the window is unknown)."""
    length = duration_of(budget.duration)
    if budget.resets_at is not None and length is not None:
        return min((budget.resets_at - length).date(), now.date())
    return now.date()


def sum_spend_logs(body: Any) -> dict[str, float] | None:
    """Per-model spend from /spend/logs: daily summaries (`models`) or raw rows (`model`, `spend`)."""
    if not isinstance(body, list):
        return None
    totals: dict[str, float] = {}
    for row in body:
        if not isinstance(row, dict):
            continue
        if isinstance(row.get("models"), dict):
            for model, spend in row["models"].items():
                value = _number(spend)
                if isinstance(model, str) and value is not None:
                    totals[model] = totals.get(model, 0.0) + value
        elif _number(row.get("spend")) is not None:
            # `model_group` is the name the user chose (claude-sonnet); `model` is the provider
            # route behind it (openai/claude-sonnet-4-5), only used when a row has no group.
            name = row.get("model_group") or row.get("model")
            if isinstance(name, str) and name:
                totals[name] = totals.get(name, 0.0) + (_number(row["spend"]) or 0.0)
    return totals


# ---------------------------------------------------------------------------------------------
# Fetching


@dataclass(frozen=True)
class Sources:
    """Where the facts may come from: the gateway, and the provisioner when configured."""

    gateway: Endpoint
    provisioner: Endpoint | None


def fetch_usage(
    sources: Sources,
    source: SourceName,
    requested_level: str,
    *,
    by_model: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Usage:
    """Ask `source` about the key; raise AgentError (with its class's exit code) when it cannot."""
    if source == "provisioner":
        if sources.provisioner is None:
            raise AgentError("--source provisioner needs PROVISIONER_URL (or --provisioner-url) to be set")
        usage = _from_provisioner(sources.provisioner, requested_level, now())
    else:
        usage = _from_litellm(sources.gateway, requested_level, now())
    key = usage.key
    if key is not None and key.model_spend:
        usage.by_model = ModelBreakdown(True, dict(key.model_spend), "key model_spend")
    elif by_model:
        usage.by_model = _spend_logs(sources.gateway, usage.budget, now())
    return usage


def _from_litellm(endpoint: gateway.Endpoint, requested: str, now: datetime) -> Usage:
    answer = gateway.call(endpoint, "GET", "/key/info")
    body = gateway.json_object(answer, endpoint)
    info = key_info_of(body, endpoint.key)
    if info is None:
        raise _not_shaped(endpoint, "/key/info", "an `info` object")
    key = key_state(info, now)
    usage = Usage(
        "litellm",
        endpoint.base_url,
        ["/key/info"],
        mask(endpoint.key),
        key,
        budget_of(info),
        enforcement_of(key, requested),
        fetched_at=now,
    )
    usage.user, note = _user_info(endpoint)
    if usage.user is not None:
        usage.endpoints.append("/user/info")
    if note:
        usage.notes.append(note)
    return usage


def _user_info(endpoint: gateway.Endpoint) -> tuple[UserState | None, str | None]:
    """The key's user (its own budget, if any); a missing user is a note, not a failure."""
    try:
        answer = gateway.call(endpoint, "GET", "/user/info")
    except AgentError as exc:
        return None, f"user totals unavailable: {exc.message}"
    if answer.status == 404:
        return None, "the key belongs to no LiteLLM user: only the key's own budget applies"
    if not answer.ok:
        return None, f"user totals unavailable: {gateway.refusal(answer, endpoint).message}"
    return (user_state(answer.body) if isinstance(answer.body, dict) else None), None


def _from_provisioner(endpoint: gateway.Endpoint, requested: str, now: datetime) -> Usage:
    path = "/api/v1/keys/info"
    answer = gateway.call(endpoint, "GET", path)
    body = gateway.json_object(answer, endpoint)
    info = key_info_of(body, endpoint.key)
    user = user_state(body)
    if info is None and user is None:
        raise _not_shaped(endpoint, path, "LiteLLM's key or user info")
    key = key_state(info, now) if info is not None else None
    if info is not None:
        budget = budget_of(info)
    else:  # /user/info's answer without the key's row: the user's budget is the best there is
        assert user is not None
        budget = Budget(user.spend, user.max_budget, user.duration, user.resets_at)
    usage = Usage(
        "provisioner",
        endpoint.base_url,
        [path],
        mask(endpoint.key),
        key,
        budget,
        enforcement_of(key, requested),
        user=user,
        fetched_at=now,
    )
    if info is None:
        usage.notes.append("the provisioner's answer has no row for this key: the budget shown is the user's")
    return usage


def _spend_logs(endpoint: gateway.Endpoint, budget: Budget, now: datetime) -> ModelBreakdown:
    """Per-model spend from LiteLLM's spend logs for this key since the window began."""
    since = window_start(budget, now)
    params = {
        "api_key": token_hash(endpoint.key),  # the hash LiteLLM stores, never the key in a URL
        "start_date": since.isoformat(),
        "end_date": (now.date() + timedelta(days=1)).isoformat(),
        # Rows, not daily summaries: a summary keys spend by the provider route
        # (openai/claude-sonnet-4-5); a row also names the model the user chose (`model_group`).
        # LiteLLM caps the rows it returns, and the transport caps the body.
        "summarize": "false",
    }
    try:
        answer = gateway.call(endpoint, "GET", "/spend/logs", params=params)
    except AgentError as exc:
        return ModelBreakdown(False, reason=exc.message)
    if not answer.ok:
        _kind, said = answer.error()
        reason = redact(said, [endpoint.key]) or f"HTTP {answer.status}"
        return ModelBreakdown(False, reason=f"the gateway offers no spend logs to this key ({answer.status}: {reason})")
    totals = sum_spend_logs(answer.body)
    if totals is None:
        return ModelBreakdown(False, reason="the gateway's /spend/logs answer is not a list of log rows")
    return ModelBreakdown(True, totals, "/spend/logs", since)


def _not_shaped(endpoint: gateway.Endpoint, path: str, wanted: str) -> AgentError:
    return AgentError(
        f"{endpoint.name} at {endpoint.base_url} answered {path} without {wanted}: "
        f"{endpoint.setting} does not look like it points at {endpoint.name.removeprefix('the ')}",
        EXIT_BAD_ANSWER,
    )


def reset_hint(sources: Sources, source: SourceName, now: datetime) -> datetime | None:
    """When an exhausted budget resets, asked after the gateway refused a request (None: unknown)."""
    try:
        usage = fetch_usage(sources, source, "standard", now=lambda: now)
    except AgentError:
        return None
    return usage.budget.resets_at


def budget_message(exc: gateway.BudgetExhausted | None, budget: Budget | None, resets_at: datetime | None, now: datetime, masked: str) -> str:
    """The budget-exhausted sentence, with when it resets (or that nobody said)."""
    if exc is not None:
        head = exc.message
    else:
        assert budget is not None
        head = f"the budget of key {masked} is used up ({money(budget.spend)} spent of {money(budget.max_budget)}): requests are refused until it resets"
    if resets_at is not None:
        return f"{head}; it resets at {_iso(resets_at)} ({relative(resets_at, now)}); ask an admin if you need more before then"
    return f"{head}; the gateway did not say when it resets: ask an admin if you need more sooner"


# ---------------------------------------------------------------------------------------------
# Small helpers shared with the views


def relative(when: datetime, now: datetime) -> str:
    """`in 5 h 12 min` / `3 days ago`: a person's sense of a time."""
    seconds = (when - now).total_seconds()
    future = seconds >= 0
    seconds = abs(seconds)
    if seconds < 60:
        span = "less than a minute"
    elif seconds < 3600:
        span = f"{int(seconds // 60)} min"
    elif seconds < 86400 * 2:
        hours, minutes = divmod(int(seconds // 60), 60)
        span = f"{hours} h {minutes} min" if minutes else f"{hours} h"
    else:
        span = f"{int(seconds // 86400)} days"
    return f"in {span}" if future else f"{span} ago"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def _money(value: float | None) -> float | None:
    return round(value, 6) if value is not None else None
