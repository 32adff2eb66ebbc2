"""One request to the LiteLLM gateway (or the provisioner's info route) with the workspace key.

`call` does the HTTP with a bounded time and size and returns an `Answer`, or raises AgentError
when nothing usable came back (unreachable, too slow). `refusal` turns a non-2xx answer into the
AgentError of its class: each class has its own exit code (errors.py) because each asks the
developer to do something different next. The key never appears in a message: every text that
came from a server is redacted before it is shown.

httpx is imported inside `call`, so importing this module stays cheap for the CLI.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workspace_agent.errors import (
    EXIT_BAD_ANSWER,
    EXIT_BUDGET,
    EXIT_ERROR,
    EXIT_KEY_REFUSED,
    EXIT_NO_KEY,
    EXIT_NO_TRACKING,
    EXIT_UNREACHABLE,
    AgentError,
)
from workspace_agent.money import money
from workspace_agent.redact import mask, redact

if TYPE_CHECKING:  # pragma: no cover
    import httpx

MAX_BODY_BYTES = 8 * 1024 * 1024

# `error.kind` in the --json objects of ai-usage / ai-models, by exit code (docs/ai-usage.md).
ERROR_KINDS = {
    EXIT_ERROR: "error",
    EXIT_NO_KEY: "no_key",
    EXIT_KEY_REFUSED: "key_refused",
    EXIT_BUDGET: "budget_exhausted",
    EXIT_UNREACHABLE: "gateway_unreachable",
    EXIT_NO_TRACKING: "no_usage_tracking",
    EXIT_BAD_ANSWER: "unexpected_answer",
}
_SHOWN_MAX = 200
_BUDGET_NUMBERS = re.compile(r"Current cost:\s*([-+0-9.eE]+),\s*Max budget:\s*([-+0-9.eE]+)")


@dataclass(frozen=True)
class Endpoint:
    """Where to ask, with which key, how long to wait, and how to name it in a sentence."""

    base_url: str
    key: str = field(repr=False)
    timeout: float = 10.0
    name: str = "the gateway"
    setting: str = "AI_GATEWAY_URL"


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer: status, JSON body (None when not JSON), headers, time taken."""

    path: str
    status: int
    body: Any
    text: str  # the start of a body that is not JSON, one line, redacted
    headers: Mapping[str, str]
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    def error(self) -> tuple[str | None, str]:
        """(LiteLLM error type, message) from `{"error": {"type", "message"}}` or similar bodies."""
        body = self.body
        kind: str | None = None
        message = ""
        if isinstance(body, dict):
            err = body.get("error", body.get("detail", body.get("message")))
            if isinstance(err, dict):
                kind = err.get("type") if isinstance(err.get("type"), str) else None
                err = err.get("message", err.get("error"))
            if isinstance(err, str):
                message = err
        elif self.text:
            message = self.text
        return kind, _one_line(message)


class BudgetExhausted(AgentError):
    """The gateway refused the key because its budget is used up (spent/max when it said)."""

    def __init__(self, message: str, spent: float | None, max_budget: float | None) -> None:
        super().__init__(message, EXIT_BUDGET)
        self.spent = spent
        self.max_budget = max_budget


def call(
    endpoint: Endpoint,
    method: str,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
    transport: httpx.BaseTransport | None = None,
) -> Answer:
    """Send one request; raise AgentError (EXIT_UNREACHABLE) when no complete answer arrives."""
    import httpx

    shown = endpoint.base_url
    url = endpoint.base_url.rstrip("/") + path
    headers = {
        "Authorization": f"Bearer {endpoint.key}",
        "Accept": "application/json",
        "User-Agent": _user_agent(),
    }
    started = time.perf_counter()
    problem: str | None = None
    try:
        with (
            httpx.Client(transport=transport, trust_env=True, follow_redirects=False) as client,
            client.stream(
                method,
                url,
                params=params,
                json=json_body,
                headers=headers,
                timeout=httpx.Timeout(endpoint.timeout),
            ) as response,
        ):
            raw = _read_limited(response, started, endpoint.timeout)
            status = response.status_code
            answer_headers = {k.lower(): v for k, v in response.headers.items()}
    except _TooSlow:
        problem = "slow"
    except httpx.TimeoutException:
        problem = "slow"
    except httpx.ConnectError as exc:
        problem = f"cannot connect: {_reason(exc)}"
    except httpx.TransportError as exc:
        problem = f"the connection failed: {_reason(exc)}"
    except httpx.HTTPError as exc:
        problem = f"the request failed: {_reason(exc)}"
    elapsed = time.perf_counter() - started
    if problem == "slow":
        raise AgentError(
            f"{endpoint.name} at {shown} did not answer {method} {path} within "
            f"{endpoint.timeout:g} s (timeout): it is overloaded or stuck; try again in a minute, "
            "or allow more time with --timeout",
            EXIT_UNREACHABLE,
        )
    if problem is not None:
        raise AgentError(
            redact(
                f"cannot reach {endpoint.name} at {shown} ({problem}): check {endpoint.setting} "
                f"(now {shown}) and that the service is running, then try again",
                [endpoint.key],
            ),
            EXIT_UNREACHABLE,
        )
    if raw is None:
        raise AgentError(
            f"{endpoint.name} at {shown} sent more than {MAX_BODY_BYTES // (1024 * 1024)} MB for "
            f"{path}: {endpoint.setting} does not look like a LiteLLM proxy",
            EXIT_BAD_ANSWER,
        )
    try:
        body = json.loads(raw) if raw else None
        text = ""
    except (ValueError, RecursionError):
        body, text = None, redact(_one_line(raw.decode("utf-8", "replace")), [endpoint.key])
    return Answer(path, status, body, text, answer_headers, elapsed)


def refusal(answer: Answer, endpoint: Endpoint) -> AgentError:
    """The AgentError for an answer that is not a success, by class (see errors.py)."""
    kind, said = answer.error()
    said = redact(said, [endpoint.key]) or "no reason given"
    where = f"{endpoint.name} at {endpoint.base_url}"
    masked = mask(endpoint.key)
    status = answer.status
    if kind == "budget_exceeded" or "budget has been exceeded" in said.lower():
        numbers = _BUDGET_NUMBERS.search(said)
        spent = _float(numbers.group(1)) if numbers else None
        max_budget = _float(numbers.group(2)) if numbers else None
        amounts = f" ({money(spent)} spent of {money(max_budget)})" if spent is not None and max_budget is not None else ""
        return BudgetExhausted(
            f"the budget of key {masked} is used up{amounts}: requests are refused until it resets",
            spent,
            max_budget,
        )
    if kind == "no_db_connection" or "database not connected" in said.lower() or "no connected db" in said.lower():
        return AgentError(
            f"{where} has no database connected ({status}: {said}), so it keeps no usage and cannot "
            "look up virtual keys: ask an admin to connect LiteLLM to its database (DATABASE_URL)",
            EXIT_NO_TRACKING,
        )
    if kind == "key_model_access_denied":
        return AgentError(
            f"{where} does not let key {masked} use that model ({status}: {said}): pick one of the "
            "models `ai-models` lists (AI_MODEL), or ask an admin to add it to the key",
            EXIT_KEY_REFUSED,
        )
    if status in (401, 403):
        return AgentError(
            f"{where} refused key {masked} ({status}: {said}): the key has expired, was revoked, or "
            "is not one this gateway knows; run `workspace-agent bootstrap` to fetch the workspace's "
            "current key, or ask an admin for a new one",
            EXIT_KEY_REFUSED,
        )
    if status == 429:
        return AgentError(
            f"{where} is rate-limiting key {masked} (429: {said}): wait a minute and try again "
            "(`ai-usage` shows the key's rpm/tpm limits)",
            EXIT_BAD_ANSWER,
        )
    if status == 404:
        return AgentError(
            f"nothing answers {answer.path} at {endpoint.base_url} (404): {endpoint.setting} should "
            f"be the base URL of {endpoint.name.removeprefix('the ')}, without a path",
            EXIT_BAD_ANSWER,
        )
    return AgentError(
        f"{where} answered {answer.path} with HTTP {status} ({said}); try again, and tell an admin "
        "if it persists",
        EXIT_BAD_ANSWER,
    )


def json_object(answer: Answer, endpoint: Endpoint) -> dict[str, Any]:
    """A successful answer's body as a JSON object, or the error saying what came instead."""
    if not answer.ok:
        raise refusal(answer, endpoint)
    if not isinstance(answer.body, dict):
        got = "a body that is not JSON" if answer.body is None else "JSON that is not an object"
        raise AgentError(
            f"{endpoint.name} at {endpoint.base_url} answered {answer.path} with {got}: "
            f"{endpoint.setting} does not look like it points at {endpoint.name.removeprefix('the ')}",
            EXIT_BAD_ANSWER,
        )
    return answer.body


class _TooSlow(Exception):
    """The body kept trickling in past the timeout."""


def _read_limited(response: httpx.Response, started: float, timeout: float) -> bytes | None:
    """The body, or None when it is larger than MAX_BODY_BYTES; _TooSlow past the timeout."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if time.perf_counter() - started > timeout:
            raise _TooSlow
    return b"".join(chunks)


def _float(text: str) -> float | None:
    try:
        return float(text.rstrip("."))
    except ValueError:
        return None


def _one_line(text: str) -> str:
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= _SHOWN_MAX else flat[: _SHOWN_MAX - 1] + "…"


def _reason(exc: BaseException) -> str:
    return _one_line(str(exc)) or type(exc).__name__


def _user_agent() -> str:
    from workspace_agent import __version__

    return f"workspace-agent/{__version__}"
