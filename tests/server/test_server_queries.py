"""queries.ingest on a real database against a model made of the pure plan alone: a long random
sequence of reports (rules appearing, changing, corrected, removed; exit codes; heartbeats with
nothing changed, which take the digest path) must leave exactly the rows the model predicts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
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


def with_resends_and_late(reports: list[wire.Report], seed: int) -> list[wire.Report]:
    """The same sequence plus what a real fleet sends too: a report sent again (the agent did
    not get the answer) and an old one arriving late from the agent's queue."""
    rng = random.Random(seed)
    out: list[wire.Report] = []
    for rep in reports:
        out.append(rep)
        if out and rng.random() < 0.08:
            out.append(rng.choice(out))  # a resend: same report id
        if rng.random() < 0.05:
            old = rep.finished_at - timedelta(seconds=30)  # after the one before: late only now
            late = make_report("ws-1", [rule("key.file", "drift", "x", "y")], at=old)
            out.append(wire.Report.model_validate(late))
    return out


@pytest.mark.parametrize("batch", [1, 7])
def test_ingest_matches_the_plan_model(db_url: str, batch: int) -> None:
    """Report by report, and in batches of up to 7 (several reports of one workspace in one
    transaction, as the writer does)."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        with write_tx(engine) as conn:
            queries.enroll(conn, WorkspaceIdentity(id="ws-1"), "0.1.0", token_hash("t"), T0)
        model_rules: dict[str, RuleRow] = {}
        model_state = "unknown"
        model_moves: list[tuple[Any, ...]] = []
        model_latest: datetime | None = None
        seen_ids: set[str] = set()
        reports = with_resends_and_late(random_reports(seed=4, n=150), seed=5)
        rng = random.Random(6)
        digest_path = 0
        expected: list[tuple[bool, bool]] = []  # (duplicate, applied) per report
        done = 0
        while done < len(reports):
            chunk = reports[done : done + rng.randint(1, batch)]
            for rep in chunk:
                at = rep.finished_at
                if rep.report_id in seen_ids:
                    expected.append((True, False))
                    continue
                seen_ids.add(rep.report_id)
                if model_latest is not None and at < model_latest:
                    expected.append((False, False))
                    continue
                model_latest = at
                plan = plan_ingest(model_rules, model_state, rep, at)
                for row in plan.inserts + plan.updates:
                    model_rules[row.rule_id] = row
                for gone in plan.deletes:
                    del model_rules[gone]
                model_moves += [(m.rule_id, m.from_state, m.to_state) for m in plan.transitions]
                digest_path += not (plan.inserts or plan.updates or plan.deletes)
                model_state = plan.state
                expected.append((False, True))
            received = T0 + timedelta(days=1)
            items = [queries.IngestItem("ws-1", r, received, token_hash("t")) for r in chunk]
            with write_tx(engine) as conn:
                results = queries.ingest_many(conn, items)
            got = [(r.duplicate, r.applied) for r in results]
            assert got == expected[done : done + len(chunk)]
            done += len(chunk)
            _assert_rows(engine, model_rules, model_state, model_moves)
        assert digest_path > 60  # most reports changed nothing: the digest path was exercised
        assert sum(d for d, _ in expected) > 5 and sum(not d and not a for d, a in expected) > 3
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
