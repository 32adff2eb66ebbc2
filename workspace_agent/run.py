"""bootstrap / plan / check: one pipeline, three modes.

inputs → desired state → rules → plan (read-only) → apply (bootstrap only) → outcome. The last
outcome of bootstrap and check is recorded so that `status` can answer without doing any work.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True

from workspace_agent import __version__, fsio, privilege
from workspace_agent.config import AgentConfig
from workspace_agent.desired import Desired, build_desired, rules
from workspace_agent.errors import EXIT_CHANGED, EXIT_OK, AgentError, detailed_exit_code
from workspace_agent.keysource import KeyResolution, resolve_key
from workspace_agent.paths import Paths
from workspace_agent.plan import (
    Plan,
    RuleResult,
    apply_plan,
    build_plan,
    render_diff,
    sweep_interrupted,
)
from workspace_agent.record import Record

if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any, Literal
    Mode = Literal["bootstrap", "plan", "check"]

STALE_TEMP_S = 600.0  # a temp file of an unlocked writer this old is a killed run's leftover


class Outcome(Record):
    """Everything a run found and did; rendered as text or JSON, recorded for `status`."""

    command: Mode
    desired: Desired
    key: KeyResolution
    results: list[RuleResult]
    diff: str
    started_at_s: float  # time.time() when the run started (datetime costs an import; see started_at)
    duration_s: float
    notes: list[str]

    @property
    def started_at(self) -> datetime:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(self.started_at_s, UTC)

    def count(self, state: str) -> int:
        return sum(1 for r in self.results if r.state == state)

    @property
    def exit_code(self) -> int:
        failed = self.count("error") > 0
        if self.command == "bootstrap":
            return detailed_exit_code(changed=self.count("corrected") > 0, failed=failed)
        return detailed_exit_code(changed=self.count("drift") > 0, failed=failed)

    def summary(self) -> dict[str, Any]:
        """The stable machine-readable form (`--json`, the last-run record)."""
        config = self.desired.config
        return {
            "command": self.command,
            "agent_version": __version__,
            "exit_code": self.exit_code,
            "started_at": utc_iso(self.started_at_s),
            "duration_s": round(self.duration_s, 4),
            "enforcement_level": config.enforcement_level,
            "ai_assistant": config.ai_assistant,
            "model": self.desired.model.litellm,
            "gateway_url": config.gateway_url,
            "desired_sha256": self.desired.fingerprint(),
            "prompt_sha256": self.desired.prompt_sha256,
            "key": {
                "source": self.key.source,
                "masked": self.key.masked,
                "reused": self.key.reused,
                "problem": self.key.problem,
                "identity": self.key.identity,
                "generation": self.key.generation,
                "level": self.key.key_level,
                "rotated": self.key.rotated,
                "rotated_at": self.key.rotated_at,
            },
            "counts": {s: self.count(s) for s in ("compliant", "corrected", "drift", "error")} | {"total": len(self.results)},
            "rules": [
                {
                    "rule_id": r.rule_id,
                    "target": r.target,
                    "state": r.state,
                    "before": r.before,
                    "after": r.after,
                    "message": r.message,
                }
                for r in self.results
            ],
            "notes": self.notes,
        }


def execute(
    mode: Mode,
    config: AgentConfig,
    policy: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    wait: float = 60.0,
    log: Callable[[str], None] = lambda _m: None,
    record_run: bool = True,
) -> Outcome:
    """Run one mode; `record_run=False` leaves recording to the caller (reporting adds results first)."""
    started = time.time()
    t0 = time.perf_counter()
    paths = Paths.for_home(config.home, environ)
    # From here on every path below the home is walked without links, and a root run acts as
    # the home's owner there; only the managed dirs in /etc stay root's (docs/privilege.md).
    privilege.confine(config.home, root_dirs=(config.managed_dir, config.claude_managed_dir))
    desired = build_desired(config, dict(policy), paths)
    if mode == "bootstrap":
        from workspace_agent import lock  # bootstrap only: check and plan take no lock

        with lock.exclusive(paths.lock_file, wait):
            outcome = _run(mode, desired, started, t0, log)
    else:
        outcome = _run(mode, desired, started, t0, log)
    if mode != "plan" and record_run:
        record(paths, outcome)
    return outcome


def _run(mode: Mode, desired: Desired, started: float, t0: float, log: Callable[[str], None]) -> Outcome:
    notes: list[str] = []
    done: list[RuleResult] = []
    if mode == "bootstrap":  # the lockdown is on disk before the first network byte
        done = _apply_local_first(desired, notes)
    key = resolve_key(desired.config, desired.paths, network=(mode == "bootstrap"), log=log)
    secrets = tuple(s for s in (*desired.config.secrets, key.key or "") if s)
    every = rules(desired, key, online=(mode == "bootstrap"))
    # A local rule that failed is planned again with the rest: its file then gets one write with
    # every rule on it, so a partial failure leaves the file as before, lockdown-only, or whole.
    done = [r for r in done if r.state != "error"]
    applied = {r.rule_id for r in done}
    plan = build_plan([r for r in every if r.rule_id not in applied], secrets)
    notes = [*key.notes, *notes]
    if mode == "bootstrap":  # under the lock: temp files named for managed files are leftovers
        _sweep(plan, desired, notes)
    results = apply_plan(plan) if mode == "bootstrap" else plan.results
    if done:  # shown in the order of the rules, as one run
        order = {rule.rule_id: index for index, rule in reversed(list(enumerate(every)))}
        results = sorted([*done, *results], key=lambda r: order.get(r.rule_id, len(order)))
    diff = render_diff(plan, desired.paths.show) if mode != "bootstrap" else ""
    if diff:  # start files may hold raw provider keys: not even a diff's context lines show them
        from workspace_agent.clients.bypass import hide_values, shown_names

        diff = hide_values(diff, shown_names(desired.policy))
    return Outcome(mode, desired, key, results, diff, started, time.perf_counter() - t0, notes)


def _apply_local_first(desired: Desired, notes: list[str]) -> list[RuleResult]:
    """Apply the rules that need neither key nor network, so a slow or dead provisioner never
    delays them (the key, and the rules that use it, come after)."""
    from workspace_agent import lockdown

    plan = build_plan(lockdown.local_rules(desired), desired.config.secrets)
    _sweep(plan, desired, notes)
    return apply_plan(plan)


def _sweep(plan: Plan, desired: Desired, notes: list[str]) -> None:
    swept = sweep_interrupted(plan)
    if swept:
        names = ", ".join(sorted({desired.paths.show(p.parent) for p in swept}))
        notes.append(f"removed {len(swept)} temp file(s) an interrupted earlier run left in {names}")


def utc_iso(epoch_s: float) -> str:
    """2026-12-06T11:20:37+00:00, as datetime's isoformat(timespec="seconds") writes it in UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(epoch_s))


def record(paths: Paths, outcome: Outcome) -> None:
    """Keep the last outcome for `status` (best effort: a full disk must not fail the run)."""
    summary = outcome.summary()
    summary["finished_at"] = utc_iso(time.time())
    # Not under a lock (check records too): only temp files old enough to be a killed run's.
    fsio.sweep_temps(paths.last_run_file.parent, {paths.last_run_file.name}, min_age_s=STALE_TEMP_S)
    try:
        # One line: json writes it in C (indented, the same record took 0.5 ms of every check).
        fsio.atomic_write(paths.last_run_file, json.dumps(summary) + "\n", 0o600, durable=False)
    except AgentError as exc:
        outcome.notes.append(f"could not record this run for `status`: {exc.message}")


__all__ = ["EXIT_CHANGED", "EXIT_OK", "Outcome", "execute", "record"]
