"""One request to the LiteLLM gateway (or the provisioner's info route) with the workspace key.

`call` does the HTTP with a bounded time and size and returns an `Answer`, or raises AgentError
when nothing usable came back (unreachable, too slow). `refusal` turns a non-2xx answer into the
AgentError of its class: each class has its own exit code (errors.py) because each asks the
developer to do something different next. The key never appears in a message: every text that
came from a server is redacted before it is shown.

The HTTP is transport.py's: `Endpoint.timeout` (ai-usage/ai-models --timeout) is a deadline over
the whole exchange, so a gateway that drips its answer cannot hold the command past it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workspace_agent import transport
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
from workspace_agent.transport import TransportError, one_line

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
) -> Answer:
    """Send one request; raise AgentError (EXIT_UNREACHABLE) when no complete answer arrives."""
    shown = endpoint.base_url
    problem: TransportError | None = None
    try:
        response = transport.request(
            method,
            endpoint.base_url.rstrip("/") + path,
            timeout=endpoint.timeout,
            headers={"Authorization": f"Bearer {endpoint.key}", "Accept": "application/json"},
            params=params,
            json_body=json_body,
            max_body_bytes=MAX_BODY_BYTES,
        )
    except TransportError as exc:
        problem = exc
    if problem is not None:
        if problem.kind == transport.TIMEOUT:
            raise AgentError(
                f"{endpoint.name} at {shown} did not answer {method} {path} within "
                f"{endpoint.timeout:g} s (timeout): it is overloaded or stuck; try again in a minute, "
                "or allow more time with --timeout",
                EXIT_UNREACHABLE,
            )
        raise AgentError(
            redact(
                f"cannot reach {endpoint.name} at {shown} ({problem.message}): check "
                f"{endpoint.setting} (now {shown}) and that the service is running, then try again",
                [endpoint.key],
            ),
            EXIT_UNREACHABLE,
        )
    if response.too_large:
        raise AgentError(
            f"{endpoint.name} at {shown} sent more than {MAX_BODY_BYTES // (1024 * 1024)} MB for "
            f"{path}: {endpoint.setting} does not look like a LiteLLM proxy",
            EXIT_BAD_ANSWER,
        )
    raw = response.body
    try:
        body = json.loads(raw) if raw else None
        text = ""
    except (ValueError, RecursionError):
        body, text = None, redact(_one_line(raw.decode("utf-8", "replace")), [endpoint.key])
    return Answer(path, response.status, body, text, response.headers, response.elapsed_s)


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


def _float(text: str) -> float | None:
    try:
        return float(text.rstrip("."))
    except ValueError:
        return None


def _one_line(text: str) -> str:
    return one_line(text, _SHOWN_MAX)
