"""ai-usage and ai-models as text for a person (and one short line for Coder's metadata block).

Pure functions: values in, text out. Plain ASCII apart from the masked key's ellipsis, so the
output reads the same in a terminal, a startup log and the Coder dashboard.
"""

from __future__ import annotations

from datetime import datetime

from workspace_agent.models import Models
from workspace_agent.money import money
from workspace_agent.usage import Usage, relative

BAR_WIDTH = 20
_SOURCE_NAMES = {"litellm": "LiteLLM", "provisioner": "the key provisioner"}


def bar(fraction: float | None, width: int = BAR_WIDTH) -> str:
    """`[#############.......]`: the share of the budget that is left."""
    if fraction is None:
        return ""
    filled = round(max(0.0, min(fraction, 1.0)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "unknown"
    return f"{value.strftime('%Y-%m-%d %H:%M UTC')} ({relative(value, now)})"


def render_usage(usage: Usage, now: datetime) -> str:
    b, k = usage.budget, usage.key
    source = _SOURCE_NAMES[usage.source]
    alias = f" ({k.alias})" if k and k.alias else ""
    lines = [
        (
            f"ai-usage: key {usage.masked_key}{alias}, from {source} "
            f"{' + '.join(usage.endpoints)} at {usage.source_url}"
        )
    ]

    def row(label: str, text: str) -> None:
        lines.append(f"  {label:<9} {text}")

    window = f"in this budget window ({b.duration})" if b.duration else "so far (the budget never resets)"
    if b.max_budget is None:
        row("spent", f"{money(b.spend)} {window}; no budget limit")
    else:
        row("spent", f"{money(b.spend)} of {money(b.max_budget)} {window}")
        share = f"{b.left_fraction * 100:.0f}%" if b.left_fraction is not None else ""
        row("left", f"{money(b.left)}  {bar(b.left_fraction)} {share}".rstrip())
    if b.duration or b.resets_at:
        row("resets", _when(b.resets_at, now))
    if k is not None:
        rpm = f"{k.rpm_limit} requests/min" if k.rpm_limit else "no request limit"
        tpm = f"{k.tpm_limit:,} tokens/min" if k.tpm_limit else "no token limit"
        row("limits", f"{rpm}, {tpm}")
        expiry = f"expires {_when(k.expires_at, now)}" if k.expires_at else "never expires"
        if k.status == "expired" and k.expires_at:
            expiry = f"expired {_when(k.expires_at, now)}"
        from workspace_agent.keysource import generation_words

        generation = generation_words(k.generation, k.rotated_at, k.level)
        row("key", f"{k.status}, {expiry}" + (f", {generation}" if generation else ""))
        if k.models:
            row("models", ", ".join(k.models))
    row("level", usage.enforcement.explain())
    if usage.user is not None and (usage.user.spend is not None or usage.user.max_budget is not None):
        u = usage.user
        limit = f" of {money(u.max_budget)}" if u.max_budget is not None else ""
        row("user", f"{u.user_id or 'this key'}'s total: {money(u.spend)}{limit}")
    if usage.by_model is not None:
        d = usage.by_model
        if d.available and d.spend:
            parts = ", ".join(f"{m} {money(v)}" for m, v in sorted(d.spend.items(), key=lambda i: -i[1]))
            since = f" since {d.since.isoformat()}" if d.since else ""
            row("by model", f"{parts} ({d.source}{since})")
        elif d.available:
            row("by model", f"no spend recorded ({d.source})")
        else:
            row("by model", f"unavailable: {d.reason}")
    for note in usage.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def render_usage_short(usage: Usage, now: datetime) -> str:
    """One line, for a Coder metadata block: spent / limit (left), reset, level."""
    b = usage.budget
    if b.max_budget is None:
        head = f"{money(b.spend)} spent, no limit"
    else:
        left = f"{b.left_fraction * 100:.0f}% left" if b.left_fraction is not None else "left unknown"
        head = f"{money(b.spend)} of {money(b.max_budget)} ({left})"
    resets = f", resets {relative(b.resets_at, now)}" if b.resets_at else ""
    level = usage.enforcement.applied or usage.enforcement.requested
    return f"{head}{resets}, level {level}\n"


def render_models(models: Models) -> str:
    count = len(models.models)
    lines = [
        (
            f"ai-models: {count} model{'s' if count != 1 else ''} for key {models.masked_key} at "
            f"{models.gateway_url} (live /v1/models; * = this workspace's default)"
        )
    ]
    width = max((len(m.id) for m in models.models), default=10)
    for m in models.models:
        mark = "*" if m.id == models.default_model else " "
        limits = []
        if m.max_input_tokens:
            limits.append(f"context {m.max_input_tokens:,}")
        if m.max_output_tokens:
            limits.append(f"output {m.max_output_tokens:,}")
        used = ", ".join(u.describe() for u in models.used_by(m.id))
        limit_text = ", ".join(limits) or "limits not given"
        lines.append(f"  {mark} {m.id:<{width}}  {limit_text:<34}  {used}".rstrip())
    lines.append(
        f"enforcement: {models.requested_level} (this workspace's setting; "
        + ("the check below shows what the gateway applies)" if models.check else "`ai-models --check` shows what the gateway applies)")
    )
    if models.check is not None:
        lines.append(render_check(models))
    for note in models.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def render_check(models: Models) -> str:
    check = models.check
    assert check is not None
    head = f"check: {check.model} answered in {check.latency_ms:.0f} ms"
    mark = check.mark
    if not mark.applied:
        return (
            f"{head}; no x-workspace-enforcement header: the gateway's enforcement hook is not "
            "installed (or something between here and the gateway drops the header), so the "
            "prompt is only the clients' copy; tell an admin"
        )
    if mark.level is None:
        return f"{head}; the gateway's enforcement header is not understood: {mark.header!r}"
    if mark.sha256 is None and mark.level == "unrestricted":
        applied = "the gateway applied level unrestricted: no prompt prepended"
    elif mark.sha256 is None:
        applied = f"the gateway applied level {mark.level} but did not say which prompt"
    else:
        applied = f"the gateway prepended the {mark.level} prompt (sha256 {mark.sha256[:12]}...)"
    parts = [f"{head}; {applied}"]
    if mark.fallback_from:
        parts.append(f"the key's level {mark.fallback_from!r} is unknown to the gateway, which fell back to {mark.level}")
    if mark.same_prompt is True and mark.sha256:
        parts.append(f"same bytes as this workspace's prompts/{mark.level}.md")
    elif mark.same_prompt is False:
        parts.append(
            f"it differs from this workspace's prompts/{mark.level}.md: the gateway and this "
            "workspace ship different prompt versions; tell an admin"
        )
    if mark.level != models.requested_level:
        parts.append(
            f"this workspace asks for {models.requested_level}: the key keeps the level it was "
            "made with; ask an admin to rotate the key to change it"
        )
    return "; ".join(parts)
