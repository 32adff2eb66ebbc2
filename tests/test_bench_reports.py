"""Benchmark reports are valid wire reports (the server would refuse anything else with 422)."""

from __future__ import annotations

import json

from benchmarks import reports
from workspace_agent import wire


def test_heartbeat_and_drifted_reports_validate_against_the_wire_model() -> None:
    calm = wire.Report.model_validate_json(reports.body("ws-00000001"))
    drifted = wire.Report.model_validate_json(reports.body("ws-00000001", drifted=True, kind="check"))
    assert calm.kind == "heartbeat" and calm.exit_code == 0
    assert {r.state for r in calm.rules} == {"compliant"} and len(calm.rules) == len(reports.RULES)
    assert drifted.exit_code == 2 and [r.rule_id for r in drifted.rules if r.state == "drift"] == [
        "vscode.setting.chat.disableAIFeatures"]
    assert calm.report_id != wire.Report.model_validate_json(reports.body("ws-00000001")).report_id


def test_enroll_body_validates() -> None:
    request = wire.EnrollRequest.model_validate(json.loads(reports.enroll_body(reports.workspace_id(7))))
    assert request.workspace.id == "bench-00000007"
