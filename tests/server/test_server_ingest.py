"""plan_ingest as tables: stored rules + a report → transitions and failing episodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from workspace_agent_server.ingest import (
    RuleRow,
    plan_ingest,
    plan_same_rules,
    rules_digest,
    same_rules_apply,
    workspace_state,
)

from tests.server.conftest import make_report, rule
from workspace_agent import wire

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def report(*rules: dict, exit_code: int | None = None) -> wire.Report:  # type: ignore[type-arg]
    return wire.Report.model_validate(make_report("ws", list(rules), at=T1, exit_code=exit_code))


def stored(
    rule_id: str,
    state: str,
    failing_since: datetime | None = None,
    recovered_at: datetime | None = None,
) -> RuleRow:
    return RuleRow(
        rule_id, "~/.config/x.json", state, None, None, None, T0, failing_since, recovered_at
    )


@pytest.mark.parametrize(
    "old_state, new_state, since, recovered, moved",
    [
        # (old rule state or None) → report state: failing_since, recovered_at, transition?
        (None, "compliant", None, None, False),
        (None, "drift", T1, None, True),
        (None, "corrected", T1, T1, True),
        ("compliant", "compliant", None, None, False),
        ("compliant", "drift", T1, None, True),
        ("drift", "drift", T0, None, False),  # still failing: the episode keeps its start
        ("drift", "error", T0, None, True),
        ("drift", "corrected", T0, T1, True),
        ("drift", "compliant", T0, T1, True),
        ("corrected", "corrected", T1, T1, True),  # drifted again and was put back: a new episode
        ("corrected", "compliant", T0, T0, True),
    ],
)
def test_failing_episodes(
    old_state: str | None,
    new_state: str,
    since: datetime | None,
    recovered: datetime | None,
    moved: bool,
) -> None:
    old = {}
    if old_state is not None:
        failing = T0 if old_state != "compliant" else None
        old["r"] = stored("r", old_state, failing, T0 if old_state == "corrected" else None)
    plan = plan_ingest(old, "compliant", report(rule("r", new_state)), T1)
    rows = plan.inserts + plan.updates
    if rows:
        (row,) = rows
        assert (row.failing_since, row.recovered_at) == (since, recovered)
    else:
        assert old_state == new_state and (old["r"].failing_since, old["r"].recovered_at) == (
            since,
            recovered,
        )
    rule_moves = [t for t in plan.transitions if t.rule_id == "r"]
    assert bool(rule_moves) == moved


def test_unchanged_heartbeat_writes_nothing() -> None:
    old = {"a": stored("a", "compliant"), "b": stored("b", "drift", T0)}
    plan = plan_ingest(old, "drifted", report(rule("a"), rule("b", "drift")), T1)
    assert (plan.inserts, plan.updates, plan.deletes, plan.transitions) == ([], [], [], [])
    assert (plan.state, plan.rules_total, plan.rules_failing) == ("drifted", 2, 1)


def test_changed_value_in_same_state_is_updated_without_a_transition() -> None:
    old = {"b": stored("b", "drift", T0)}
    plan = plan_ingest(old, "drifted", report(rule("b", "drift", "1", "2")), T1)
    assert [r.before for r in plan.updates] == ["1"] and plan.transitions == []
    assert plan.updates[0].failing_since == T0 and plan.updates[0].state_since == T0


def test_workspace_state_precedence() -> None:
    assert workspace_state(["error", "drift"], 6) == "drifted"
    assert workspace_state(["error", "compliant"], 4) == "error"
    assert workspace_state(["corrected", "compliant"], 2) == "compliant"
    assert workspace_state([], 1) == "error"
    assert workspace_state([], 0) == "compliant"


def test_first_report_and_newly_drifted() -> None:
    plan = plan_ingest({}, "unknown", report(rule("a", "drift")), T1)
    assert plan.newly_drifted
    assert [(t.rule_id, t.from_state, t.to_state) for t in plan.transitions] == [
        ("a", None, "drift"),
        (None, None, "drifted"),
    ]
    assert not plan_ingest(
        {"a": stored("a", "drift", T0)}, "drifted", report(rule("a", "drift")), T1
    ).newly_drifted


def test_repeated_rule_id_counts_once() -> None:
    plan = plan_ingest({}, "unknown", report(rule("a"), rule("a", "drift")), T1)
    assert [r.state for r in plan.inserts] == ["compliant"]
    assert (plan.rules_total, plan.rules_failing, plan.state) == (1, 0, "compliant")


# --- the rules digest: a heartbeat with nothing changed is planned without the rule rows --------


def as_stored(r: wire.Report) -> dict[str, RuleRow]:
    return {
        x.rule_id: RuleRow(
            x.rule_id, x.target, x.state, x.before, x.after, x.message, T0, None, None
        )
        for x in r.rules
    }


@pytest.mark.parametrize("old_state", ["unknown", "compliant", "drifted", "error"])
@pytest.mark.parametrize("exit_code", [0, 1, 2, 4, 6])
@pytest.mark.parametrize(
    "states",
    [("compliant",), ("compliant", "drift"), ("error", "compliant"), ("drift", "error", "drift")],
)
def test_same_rules_plan_is_what_the_full_plan_gives(
    old_state: str, exit_code: int, states: tuple[str, ...]
) -> None:
    rep = report(*(rule(f"r{i}", s, "1", "2") for i, s in enumerate(states)), exit_code=exit_code)
    assert same_rules_apply(rep, rules_digest(rep.rules))
    full = plan_ingest(as_stored(rep), old_state, rep, T1)
    assert (full.inserts, full.updates, full.deletes) == ([], [], [])
    assert plan_same_rules(old_state, rep) == full


def test_digest_sees_every_stored_field_and_ignores_order() -> None:
    base = report(rule("a", "drift", "1", "2", message="m"), rule("b"))
    digest = rules_digest(base.rules)
    assert digest == rules_digest(
        report(rule("b"), rule("a", "drift", "1", "2", message="m")).rules
    )
    for changed in [
        rule("a", "error", "1", "2", message="m"),
        rule("a", "drift", "0", "2", message="m"),
        rule("a", "drift", "1", "3", message="m"),
        rule("a", "drift", "1", "2", message="n"),
        rule("a", "drift", "1", "2", message="m", target="/elsewhere"),
        rule("a", "drift", "1", None, message="m"),
    ]:
        assert rules_digest(report(changed, rule("b")).rules) != digest
    assert rules_digest(report(rule("a", "drift", "1", "2", message="m")).rules) != digest
    assert rules_digest(report().rules) is None


def test_same_rules_does_not_apply_to_corrected_repeats_or_no_digest() -> None:
    corrected = report(rule("a", "corrected", "1", "2"))  # each one is a new episode
    assert not same_rules_apply(corrected, rules_digest(corrected.rules))
    repeated = report(rule("a"), rule("a"))
    assert not same_rules_apply(repeated, rules_digest(repeated.rules))
    plain = report(rule("a"))
    assert not same_rules_apply(plain, None)
    assert not same_rules_apply(plain, rules_digest(report(rule("a", "drift")).rules))
