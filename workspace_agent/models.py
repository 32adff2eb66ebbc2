"""ai-models: the models this key may use, live from the gateway, beside what the workspace uses.

`GET /v1/models` with the workspace key gives the key's models (LiteLLM filters the list to the
key's `models`); the desired state says which model is the default and which tool uses which
(each registered client says which it uses: clients/registry.py). `--check` sends a one-token
chat request to the default model and reads the `x-workspace-enforcement` header that the
gateway's enforcement hook (workspace_agent.litellm_hook) puts on every answer, to tell whether
the prompt was applied server-side and whether its bytes are the ones this workspace ships.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workspace_agent import data, gateway
from workspace_agent.desired import Desired
from workspace_agent.errors import EXIT_BAD_ANSWER, AgentError
from workspace_agent.redact import mask

SCHEMA = "workspace-agent.ai-models/1"
ENFORCEMENT_HEADER = "x-workspace-enforcement"
CHECK_PROMPT = "Reply with the single word: ok"


@dataclass(frozen=True)
class ModelInfo:
    id: str
    mode: str | None
    max_input_tokens: int | None
    max_output_tokens: int | None
    owned_by: str | None


@dataclass(frozen=True)
class ToolUse:
    tool: str  # a registered client's name: roo-code, zoo-code, opencode, claude-code
    role: str  # model | small_model
    model: str  # the LiteLLM model name

    def describe(self) -> str:
        from workspace_agent.clients.registry import title

        name = title(self.tool)
        return f"{name} (small model)" if self.role == "small_model" else name

    def to_json(self) -> str:
        return self.tool if self.role == "model" else f"{self.tool}:{self.role}"


@dataclass(frozen=True)
class EnforcementMark:
    """What the gateway's header says it applied, compared with this workspace's prompts/."""

    header: str | None
    level: str | None
    sha256: str | None
    fallback_from: str | None
    expected_sha256: str | None  # sha256 of this workspace's copy of that level's prompt (None: empty)
    local_known: bool = False  # this workspace ships a prompt file for that level

    @property
    def applied(self) -> bool:
        return self.header is not None

    @property
    def same_prompt(self) -> bool | None:
        """Whether the gateway prepended exactly this workspace's prompt bytes (None: cannot tell)."""
        if self.level is None or not self.local_known:
            return None
        return self.sha256 == self.expected_sha256


@dataclass(frozen=True)
class CheckResult:
    model: str
    status: int
    latency_ms: float
    reply: str | None
    mark: EnforcementMark


@dataclass
class Models:
    gateway_url: str
    masked_key: str
    default_model: str
    requested_level: str
    models: list[ModelInfo]
    uses: list[ToolUse]
    check: CheckResult | None = None
    notes: list[str] = field(default_factory=list)

    def used_by(self, model: str) -> list[ToolUse]:
        return [u for u in self.uses if u.model == model]

    def missing(self) -> list[ToolUse]:
        """Tool uses whose model this key may not use: those tools will fail."""
        ids = {m.id for m in self.models}
        return [u for u in self.uses if u.model not in ids]

    def to_json(self) -> dict[str, Any]:
        """The stable object of `ai-models --json` (docs/ai-usage.md); add fields, never rename."""
        check = self.check
        return {
            "schema": SCHEMA,
            "ok": True,
            "exit_code": 0,
            "gateway_url": self.gateway_url,
            "key": {"masked": self.masked_key},
            "default_model": self.default_model,
            "enforcement": {"requested": self.requested_level},
            "models": [
                {
                    "id": m.id,
                    "default": m.id == self.default_model,
                    "used_by": [u.to_json() for u in self.used_by(m.id)],
                    "mode": m.mode,
                    "max_input_tokens": m.max_input_tokens,
                    "max_output_tokens": m.max_output_tokens,
                    "owned_by": m.owned_by,
                }
                for m in self.models
            ],
            "missing": [{"model": u.model, "used_by": u.to_json()} for u in self.missing()],
            "check": None
            if check is None
            else {
                "model": check.model,
                "status": check.status,
                "latency_ms": round(check.latency_ms, 1),
                "enforcement": {
                    "applied": check.mark.applied,
                    "header": check.mark.header,
                    "level": check.mark.level,
                    "sha256": check.mark.sha256,
                    "fallback_from": check.mark.fallback_from,
                    "expected_sha256": check.mark.expected_sha256,
                    "same_prompt": check.mark.same_prompt,
                    "matches_requested": (check.mark.level == self.requested_level) if check.mark.level else None,
                },
            },
            "notes": list(self.notes),
            "error": None,
        }


def error_json(error: AgentError, url: str | None, masked_key: str | None) -> dict[str, Any]:
    """`ai-models --json` when it could not answer: `ok` false, the sentence and its kind."""
    return {
        "schema": SCHEMA,
        "ok": False,
        "exit_code": error.exit_code,
        "gateway_url": url,
        "key": {"masked": masked_key},
        "error": {"kind": gateway.ERROR_KINDS.get(error.exit_code, "error"), "message": error.message},
    }


# ---------------------------------------------------------------------------------------------
# Parsing (pure)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def parse_models(body: Mapping[str, Any]) -> list[ModelInfo] | None:
    """`{"object": "list", "data": [{"id", "max_input_tokens", ...}]}` → ModelInfo (None: not that shape)."""
    rows = body.get("data")
    if not isinstance(rows, list):
        return None
    found = []
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("id"), str) and row["id"]:
            found.append(
                ModelInfo(
                    id=row["id"],
                    mode=row.get("mode") if isinstance(row.get("mode"), str) else None,
                    max_input_tokens=_int(row.get("max_input_tokens")),
                    max_output_tokens=_int(row.get("max_output_tokens")),
                    owned_by=row.get("owned_by") if isinstance(row.get("owned_by"), str) else None,
                )
            )
    return found


def tool_uses(desired: Desired) -> list[ToolUse]:
    """Which configured tool uses which model, from the desired state (the same the configs get)."""
    from workspace_agent.clients.registry import selected

    return [
        ToolUse(client.name, role, model)
        for client in selected(desired.config.ai_assistant)
        for role, model in client.models(desired)
    ]


_HEADER_LEVEL = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


def parse_mark(header: str | None) -> EnforcementMark:
    """`design-first; sha256=<hex>[; fallback-from=<value>]` or `unrestricted` → EnforcementMark."""
    if header is None:
        return EnforcementMark(None, None, None, None, None)
    parts = [p.strip() for p in header.split(";")]
    level = parts[0] if parts and _HEADER_LEVEL.match(parts[0]) else None
    params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    sha = params.get("sha256")
    sha = sha.lower() if sha and re.fullmatch(r"[0-9a-fA-F]{64}", sha) else None
    expected, known = None, False
    if level is not None:
        try:
            prompt = data.prompt_bytes(level)
        except AgentError:  # a level this workspace does not ship
            prompt = None
        if prompt is not None:
            known = True
            expected = hashlib.sha256(prompt).hexdigest() if prompt else None
    return EnforcementMark(header, level, sha, params.get("fallback-from"), expected, known)


# ---------------------------------------------------------------------------------------------
# Fetching


def fetch_models(endpoint: gateway.Endpoint, desired: Desired, *, check: bool = False) -> Models:
    answer = gateway.call(endpoint, "GET", "/v1/models")
    body = gateway.json_object(answer, endpoint)
    found = parse_models(body)
    if found is None:
        raise AgentError(
            f"{endpoint.name} at {endpoint.base_url} answered /v1/models without a `data` list: "
            f"{endpoint.setting} does not look like it points at a LiteLLM proxy",
            EXIT_BAD_ANSWER,
        )
    result = Models(
        gateway_url=endpoint.base_url,
        masked_key=mask(endpoint.key),
        default_model=desired.model.litellm,
        requested_level=desired.config.enforcement_level,
        models=found,
        uses=tool_uses(desired),
    )
    for use in result.missing():
        result.notes.append(
            f"{use.describe()} is set up to use {use.model}, which this key may not use: it will fail "
            "until an admin adds the model to the key or AI_MODEL names one listed here"
        )
    if not found:
        result.notes.append("the gateway lists no model for this key: ask an admin which models it should have")
    if check:
        result.check = run_check(endpoint, desired.model.litellm)
    return result


def run_check(endpoint: gateway.Endpoint, model: str) -> CheckResult:
    """One chat request of at most one output token: latency, and what the gateway applied."""
    body = {"model": model, "messages": [{"role": "user", "content": CHECK_PROMPT}], "max_tokens": 1}
    answer = gateway.call(endpoint, "POST", "/v1/chat/completions", json_body=body)
    reply_body = gateway.json_object(answer, endpoint)
    reply = None
    choices = reply_body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            reply = message["content"][:80]
    return CheckResult(model, answer.status, answer.elapsed_s * 1000, reply, parse_mark(answer.headers.get(ENFORCEMENT_HEADER)))
