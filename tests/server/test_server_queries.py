"""queries.ingest on a real database against a model made of the pure plan alone: a long random
sequence of reports (rules appearing, changing, corrected, removed; exit codes; heartbeats with
nothing changed, which take the digest path) must leave exactly the rows the model predicts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from workspace_agent_server import queries
from workspace_agent_server.auth import token_hash
from workspace_agent_server.db import make_engine, migrate, rule_states, workspaces, write_tx
from workspace_agent_server.ingest import RuleRow, plan_ingest

from tests.server.conftest import make_report, rule
from workspace_agent import wire
from workspace_agent.wire import WorkspaceIdentity

T0 = datetime(2026, 2, 1, tzinfo=UTC)
RULE_IDS = ["key.file", "roo.rules", "opencode.config", "vscode.setting.chat"]


def random_reports(seed: int, n: int) -> list[wire.Report]:
    """Mostly heartbeats that repeat the last rules; now and then a change."""
    rng = random.Random(seed)
    rules = {rid: rule(rid) for rid in RULE_IDS[:3]}
    out = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.25:
            rid = rng.choice(RULE_IDS)
            state = rng.choice(["compliant", "drift", "corrected", "error"])
            before, after = (None, None) if state == "compliant" else (str(i), "want")
            rules[rid] = rule(rid, state, before, after)
        elif roll < 0.30 and len(rules) > 1:
            rules.pop(rng.choice(sorted(rules)))
        elif roll < 0.35:
            rules = {k: rule(k) for k in rules}  # all put back
        exit_code = rng.choice([None, None, None, 1])  # 1: the agent could not check everything
        body = make_report(
            "ws-1",
            [] if rng.random() < 0.03 else list(rules.values()),
            at=T0 + timedelta(minutes=i),
            exit_code=exit_code,
        )
        out.append(wire.Report.model_validate(body))
    return out


def test_ingest_matches_the_plan_model(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        with write_tx(engine) as conn:
            queries.enroll(conn, WorkspaceIdentity(id="ws-1"), "0.1.0", token_hash("t"), T0)
        model_rules: dict[str, RuleRow] = {}
        model_state = "unknown"
        model_moves: list[tuple[Any, ...]] = []
        reports = random_reports(seed=4, n=150)
        digest_path = 0
        for rep in reports:
            at = rep.finished_at
            plan = plan_ingest(model_rules, model_state, rep, at)
            for row in plan.inserts + plan.updates:
                model_rules[row.rule_id] = row
            for gone in plan.deletes:
                del model_rules[gone]
            model_moves += [(m.rule_id, m.from_state, m.to_state) for m in plan.transitions]
            digest_path += not (plan.inserts or plan.updates or plan.deletes)
            model_state = plan.state
            with write_tx(engine) as conn:
                result = queries.ingest(
                    conn, "ws-1", rep, at + timedelta(seconds=1), token_hash("t")
                )
            assert result.applied
            _assert_rows(engine, model_rules, model_state, model_moves)
        assert digest_path > 60  # most reports changed nothing: the digest path was exercised
    finally:
        engine.dispose()


def _assert_rows(
    engine: sa.Engine,
    model_rules: dict[str, RuleRow],
    model_state: str,
    model_moves: list[tuple[Any, ...]],
) -> None:
    with engine.connect() as conn:
        stored = {
            r.rule_id: RuleRow(
                r.rule_id,
                r.target,
                r.state,
                r.before,
                r.after,
                r.message,
                r.state_since,
                r.failing_since,
                r.recovered_at,
            )
            for r in conn.execute(sa.select(rule_states))
        }
        ws = conn.execute(sa.select(workspaces).where(workspaces.c.id == "ws-1")).one()
        moves = conn.execute(
            sa.text("SELECT rule_id, from_state, to_state FROM transitions ORDER BY id")
        ).all()
    assert stored == model_rules
    counted = [r.state for r in model_rules.values()]
    assert (ws.state, ws.rules_total, ws.rules_failing, ws.rules_corrected) == (
        model_state,
        len(counted),
        sum(s in ("drift", "error") for s in counted),
        counted.count("corrected"),
    )
    assert [tuple(m) for m in moves] == model_moves
