"""How an outcome is shown: a short table for people, stable JSON for machines.

Plain text when stdout is not a terminal (startup logs); colour only on a TTY. Secrets never
reach here unmasked: results carry no key values and the diff is redacted by the plan.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from workspace_agent.redact import redact
from workspace_agent.run import Outcome

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import IO, Any

_WORDS = {"compliant": "ok", "corrected": "changed", "drift": "drift", "error": "error"}
_COLOURS = {"ok": "green", "changed": "yellow", "drift": "yellow", "error": "red"}


def _style(word: str, colour: bool) -> str:
    if not colour:
        return f"{word:<8}"
    import click

    return click.style(f"{word:<8}", fg=_COLOURS.get(word))


def render_text(outcome: Outcome, *, colour: bool = False, quiet: bool = False, show_diff: bool = True) -> str:
    secrets = outcome.desired.config.secrets
    show = outcome.desired.paths.show
    lines: list[str] = []
    config = outcome.desired.config
    if not quiet:
        lines.append(
            f"workspace-agent {outcome.command}: level {config.enforcement_level}, "
            f"model {outcome.desired.model.litellm}, assistant {config.ai_assistant}"
        )
    width = max((len(r.rule_id) for r in outcome.results), default=10)
    for r in outcome.results:
        word = _WORDS[r.state]
        if quiet and word != "error":
            continue
        target = show_target(r.target, show)
        detail = ""
        if r.state == "error":
            detail = f": {r.message}"
        elif r.state in ("drift", "corrected") and r.before is not None and r.before != r.after:
            detail = f"  {r.before} → {r.after}"
        if r.state != "error" and r.message:
            detail += f" ({r.message})"
        lines.append(f"  {_style(word, colour)} {r.rule_id:<{width}}  {target}{detail}")
    if not quiet:
        lines.append(f"key: {outcome.key.describe()}")
    for note in outcome.notes:
        lines.append(f"note: {note}")
    if show_diff and outcome.diff and not quiet:
        lines.append("")
        lines.append(outcome.diff.rstrip("\n"))
    if not quiet:
        c = outcome.summary()["counts"]
        verb = "would change" if outcome.command == "plan" else "drifted"
        tail = f"{c['corrected']} changed" if outcome.command == "bootstrap" else f"{c['drift']} {verb}"
        if outcome.command == "bootstrap" and c["drift"]:
            tail += f", {c['drift']} drift (not fixed)"  # report-only rules: seen, left as they are
        # bootstrap's process exit folds "changed" into 0 unless --detailed-exitcodes: don't print
        # a code here that the shell will not see.
        code = "" if outcome.command == "bootstrap" else f", exit {outcome.exit_code}"
        lines.append(
            f"{c['total']} rules: {c['compliant']} ok, {tail}, {c['error']} errors ({outcome.duration_s:.2f} s{code})"
        )
    return redact("\n".join(lines), secrets) + ("\n" if lines else "")


def show_target(target: str, show: Callable[[Path], str]) -> str:
    """File targets relative to the home (`~/…`); other targets (extension ids) as they are."""
    return show(Path(target)) if target.startswith("/") else target


def render_json(outcome: Outcome, stream: IO[str], extra: dict[str, Any] | None = None) -> None:
    data = outcome.summary()
    data["diff"] = outcome.diff
    data.update(extra or {})
    text = json.dumps(data, indent=2, ensure_ascii=False)
    stream.write(redact(text, outcome.desired.config.secrets) + "\n")
