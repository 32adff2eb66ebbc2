"""The `usage` and `models` commands (console scripts ai-usage, ai-models): inputs → answer → exit code.

Read-only: they use the key bootstrap stored (or a pasted one), never ask the provisioner for a
new key, and write nothing. With `--json` the answer, or the failure, is one JSON object on
stdout; the failure's sentence also goes to stderr through the CLI's error handler.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Literal

from workspace_agent import gateway
from workspace_agent.config import AgentConfig
from workspace_agent.errors import EXIT_BUDGET, EXIT_NO_KEY, AgentError
from workspace_agent.keysource import stored_key
from workspace_agent.paths import Paths
from workspace_agent.redact import mask, redact

if TYPE_CHECKING:  # pragma: no cover
    from workspace_agent.usage import Sources

SourceChoice = Literal["auto", "litellm", "provisioner"]


def resolve(options: dict[str, Any], environ: Mapping[str, str]) -> tuple[AgentConfig, dict[str, Any], Paths]:
    """Config (flags > env > policy > defaults), the policy, and the paths, as bootstrap sees them."""
    from workspace_agent.policyfile import load

    config, policy = load(options, environ)
    return config, policy, Paths.for_home(config.home, environ)


def workspace_key(config: AgentConfig, paths: Paths) -> tuple[str, list[str]]:
    """The pasted key, else the stored one; AgentError(EXIT_NO_KEY) with the next step when none."""
    if config.api_key:
        return config.api_key, []
    key, warning = stored_key(paths, fix_mode=True)  # it is about to be sent: private first
    notes = [warning] if warning and key else []
    if key:
        return key, notes
    reason = f" ({warning})" if warning else ""
    raise AgentError(
        f"this workspace has no AI key yet{reason}: run `workspace-agent bootstrap` (it asks the key "
        f"provisioner and stores the key in {paths.show(paths.key_file)}), or ask an admin for a key "
        "and set LITELLM_API_KEY",
        EXIT_NO_KEY,
    )


def provisioner_configured(options: Mapping[str, Any], environ: Mapping[str, str], policy: Mapping[str, Any]) -> bool:
    """PROVISIONER_URL given by a flag, the environment or the policy (its default does not count)."""
    agent = policy.get("agent", {}) if isinstance(policy.get("agent"), dict) else {}
    return bool(options.get("provisioner_url") or environ.get("PROVISIONER_URL") or agent.get("provisioner_url"))


def run_usage(
    options: dict[str, Any],
    environ: Mapping[str, str],
    *,
    as_json: bool,
    short: bool,
    source: SourceChoice,
    by_model: bool,
    timeout: float,
    out: IO[str] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    from workspace_agent import usage as usage_mod
    from workspace_agent.views import render_usage, render_usage_short

    out = out or sys.stdout
    flags = dict(options)
    config, policy, paths = resolve(options, environ)
    chosen: usage_mod.SourceName = "litellm"
    if source == "provisioner" or (source == "auto" and provisioner_configured(flags, environ, policy)):
        chosen = "provisioner"
    url = config.provisioner_url if chosen == "provisioner" else config.gateway_url
    masked = None
    secrets = list(config.secrets)
    try:
        key, notes = workspace_key(config, paths)
        masked = mask(key)
        secrets.append(key)
        sources = _sources(config, key, timeout, chosen == "provisioner")
        try:
            result = usage_mod.fetch_usage(sources, chosen, config.enforcement_level, by_model=by_model, now=now)
        except gateway.BudgetExhausted as exc:  # the source itself refused: it cannot say when it resets
            raise AgentError(usage_mod.budget_message(exc, None, None, now(), masked), EXIT_BUDGET) from None
        result.notes[:0] = notes
    except AgentError as exc:
        if as_json:
            _dump(usage_mod.error_json(exc, chosen, url, masked), out, secrets)
        raise
    if as_json:
        _dump(result.to_json(), out, secrets)
    elif short:
        out.write(redact(render_usage_short(result, now()), secrets))
    else:
        out.write(redact(render_usage(result, now()), secrets))
    if result.budget.exhausted:
        raise AgentError(
            usage_mod.budget_message(None, result.budget, result.budget.resets_at, now(), result.masked_key),
            EXIT_BUDGET,
        )
    return 0


def run_models(
    options: dict[str, Any],
    environ: Mapping[str, str],
    *,
    as_json: bool,
    check: bool,
    timeout: float,
    out: IO[str] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    from workspace_agent import models as models_mod
    from workspace_agent import usage as usage_mod
    from workspace_agent.desired import build_desired
    from workspace_agent.views import render_models

    out = out or sys.stdout
    flags = dict(options)
    config, policy, paths = resolve(options, environ)
    masked = None
    secrets = list(config.secrets)
    try:
        desired = build_desired(config, policy, paths)
        key, notes = workspace_key(config, paths)
        masked = mask(key)
        secrets.append(key)
        endpoint = gateway.Endpoint(config.gateway_url, key, timeout)
        try:
            result = models_mod.fetch_models(endpoint, desired, check=check)
        except gateway.BudgetExhausted as exc:
            sources = _sources(config, key, timeout, provisioner_configured(flags, environ, policy))
            chosen: usage_mod.SourceName = "provisioner" if sources.provisioner else "litellm"
            resets = usage_mod.reset_hint(sources, chosen, now())
            raise AgentError(usage_mod.budget_message(exc, None, resets, now(), masked), EXIT_BUDGET) from None
        result.notes[:0] = notes
    except AgentError as exc:
        if as_json:
            _dump(models_mod.error_json(exc, config.gateway_url, masked), out, secrets)
        raise
    if as_json:
        _dump(result.to_json(), out, secrets)
    else:
        out.write(redact(render_models(result), secrets))
    return 0


def _sources(config: AgentConfig, key: str, timeout: float, with_provisioner: bool) -> Sources:
    from workspace_agent.usage import Sources

    provisioner = None
    if with_provisioner:
        provisioner = gateway.Endpoint(config.provisioner_url, key, timeout, "the key provisioner", "PROVISIONER_URL")
    return Sources(gateway.Endpoint(config.gateway_url, key, timeout), provisioner)


def _dump(document: dict[str, Any], out: IO[str], secrets: list[str]) -> None:
    out.write(redact(json.dumps(document, indent=2, ensure_ascii=False), secrets) + "\n")
