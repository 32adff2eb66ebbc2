"""Pure ingest logic: previous rule states + a report → what to write. No database here, so the
rules of "what counts as a transition" and "since when is it failing" are tested as tables.

A transition is a state change of a rule (or of the workspace), not every heartbeat. A rule that is
`corrected` again in a later run is a new episode (it drifted again and was put back), so it is
recorded too. `failing_since` is the start of the latest failing episode and stays when the rule
is corrected, so an admin sees both "failed at" and "corrected at".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from workspace_agent.wire import Report, RuleResultWire

FAILING = frozenset({"drift", "error"})
WORKSPACE_STATES = ("compliant", "drifted", "error", "unknown")


@dataclass(frozen=True)
class RuleRow:
    """One rule's current state as stored."""

    rule_id: str
    target: str
    state: str
    before: str | None
    after: str | None
    message: str | None
    state_since: datetime
    failing_since: datetime | None
    recovered_at: datetime | None


@dataclass(frozen=True)
class Transition:
    rule_id: str | None  # None: the workspace's overall state
    from_state: str | None
    to_state: str
    before: str | None = None
    after: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class IngestPlan:
    inserts: list[RuleRow] = field(default_factory=list)
    updates: list[RuleRow] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    state: str = "unknown"
    rules_total: int = 0
    rules_failing: int = 0
    rules_corrected: int = 0

    @property
    def newly_drifted(self) -> bool:
        return any(t.rule_id is None and t.to_state == "drifted" for t in self.transitions)


def workspace_state(rule_states: Iterable[str], exit_code: int) -> str:
    """Drift wins (the setup is known to be wrong), then error (could not tell), else compliant."""
    states = set(rule_states)
    if "drift" in states:
        return "drifted"
    if "error" in states or exit_code == 1:
        return "error"
    return "compliant"


def plan_ingest(
    old_rules: dict[str, RuleRow], old_state: str | None, report: Report, at: datetime
) -> IngestPlan:
    """What to write for `report` observed `at`, given the stored rules and workspace state."""
    inserts: list[RuleRow] = []
    updates: list[RuleRow] = []
    moves: list[Transition] = []
    seen: set[str] = set()
    kept: list[str] = []
    for rule in report.rules:
        if rule.rule_id in seen:
            continue  # a repeated id in one report: the first one counts
        seen.add(rule.rule_id)
        kept.append(rule.state)
        new = RuleRow(
            rule.rule_id,
            rule.target,
            rule.state,
            rule.before,
            rule.after,
            rule.message,
            at,
            None,
            None,
        )
        old = old_rules.get(rule.rule_id)
        if old is None:
            inserts.append(_episode(new, None, at))
            if rule.state != "compliant":
                moves.append(
                    Transition(
                        rule.rule_id, None, rule.state, rule.before, rule.after, rule.message
                    )
                )
        elif old.state != rule.state or rule.state == "corrected":
            updates.append(_episode(new, old, at))
            moves.append(
                Transition(
                    rule.rule_id, old.state, rule.state, rule.before, rule.after, rule.message
                )
            )
        elif (old.target, old.before, old.after, old.message) != (
            rule.target,
            rule.before,
            rule.after,
            rule.message,
        ):
            updates.append(
                replace(
                    old,
                    target=rule.target,
                    before=rule.before,
                    after=rule.after,
                    message=rule.message,
                )
            )
    deletes: list[str] = []
    if report.rules:  # a report without rules (could not check) says nothing about them
        for rule_id in sorted(set(old_rules) - seen):
            deletes.append(rule_id)
            moves.append(Transition(rule_id, old_rules[rule_id].state, "removed"))
    state = workspace_state(kept, report.exit_code)
    if state != old_state:
        # Recorded last, so that newest-first it heads the rule changes that caused it.
        moves.append(Transition(None, None if old_state == "unknown" else old_state, state))
    counted = kept if report.rules else [r.state for r in old_rules.values()]
    return IngestPlan(
        inserts=inserts,
        updates=updates,
        deletes=deletes,
        transitions=moves,
        state=state,
        rules_total=len(counted),
        rules_failing=sum(1 for s in counted if s in FAILING),
        rules_corrected=sum(1 for s in counted if s == "corrected"),
    )


def _episode(new: RuleRow, old: RuleRow | None, at: datetime) -> RuleRow:
    """Carry the failing episode (failing_since / recovered_at) from `old` into `new`."""
    was_failing = old is not None and old.state in FAILING
    if new.state in FAILING:
        since = old.failing_since if was_failing and old is not None else at
        return replace(new, failing_since=since, recovered_at=None)
    if new.state == "corrected":  # drift seen and put back in the same run
        since = old.failing_since if was_failing and old is not None else at
        return replace(new, failing_since=since, recovered_at=at)
    # compliant
    if old is None:
        return new
    if was_failing:
        return replace(new, failing_since=old.failing_since, recovered_at=at)
    return replace(new, failing_since=old.failing_since, recovered_at=old.recovered_at)


def rules_digest(rules: Sequence[RuleResultWire]) -> str | None:
    """A digest of everything stored per rule (id, target, state, before, after, message), in any
    order; None for a report without rules (it leaves the stored rules alone). Stored with the
    workspace, so a heartbeat with nothing changed is planned without reading its rule rows."""
    if not rules:
        return None
    rows = sorted((r.rule_id, r.target, r.state, r.before, r.after, r.message) for r in rules)
    return hashlib.blake2b(json.dumps(rows).encode(), digest_size=16).hexdigest()


def same_rules_apply(report: Report, stored_digest: str | None) -> bool:
    """True when `plan_same_rules` gives what `plan_ingest` would: the stored rules equal the
    report's, rule ids are unique, and none is `corrected` (which is a new episode every time)."""
    return (
        stored_digest is not None
        and not any(r.state == "corrected" for r in report.rules)
        and len({r.rule_id for r in report.rules}) == len(report.rules)
        and rules_digest(report.rules) == stored_digest
    )


def plan_same_rules(old_state: str | None, report: Report) -> IngestPlan:
    """The plan for a report whose rules are exactly the stored ones (see `same_rules_apply`):
    no rule row changes; only the workspace's state can move (e.g. the exit code says error)."""
    states = [r.state for r in report.rules]
    state = workspace_state(states, report.exit_code)
    moves = []
    if state != old_state:
        moves.append(Transition(None, None if old_state == "unknown" else old_state, state))
    return IngestPlan(
        transitions=moves,
        state=state,
        rules_total=len(states),
        rules_failing=sum(1 for s in states if s in FAILING),
        rules_corrected=0,
    )
