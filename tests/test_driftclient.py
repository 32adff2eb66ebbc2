"""The drift server's HTTP client: answers, no answers, and bounded bodies (against the stand-in)."""

from __future__ import annotations

import socket

from tests.standins.drift_server import run_drift_server
from workspace_agent.driftclient import MAX_ANSWER_BYTES, Answer, DriftClient
from workspace_agent.wire import ENROLL_PATH, REPORTS_PATH, EnrollRequest, WorkspaceIdentity


def _enroll_body() -> str:
    return EnrollRequest(workspace=WorkspaceIdentity(id="ws-c"), agent_version="0.1.0").model_dump_json()


def test_enroll_and_post_reach_the_right_routes_with_the_right_bearer() -> None:
    with run_drift_server() as server, DriftClient(server.url) as client:
        enrolled = client.enroll(server.enrollment_secret, _enroll_body())
        assert enrolled.status == 201 and enrolled.body["workspace_id"] == "ws-c"
        refused = client.post_report("not-a-token", "{}")
        assert (refused.status, refused.detail()) == (401, "unknown or revoked workspace token")
        assert [(r.path, r.headers["authorization"]) for r in server.requests] == [
            (ENROLL_PATH, f"Bearer {server.enrollment_secret}"), (REPORTS_PATH, "Bearer not-a-token")]


def test_no_answer_is_not_a_status() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with DriftClient(f"http://127.0.0.1:{port}") as client:
        answer = client.post_report("tok", "{}")
    assert answer == Answer(None, None, "cannot connect (Connection refused)")


def test_an_oversized_answer_is_not_read_to_the_end() -> None:
    with run_drift_server() as server, DriftClient(server.url) as client:
        server.canned = [(202, {"pad": "x" * (MAX_ANSWER_BYTES * 4)})]
        answer = client.post_report("tok", "{}")
    assert answer == Answer(202, None, "the answer was too large")


def test_detail_reads_fastapi_and_platform_error_shapes() -> None:
    assert Answer(422, {"detail": [{"loc": ["body"], "msg": "bad"}]}).detail() == '[{"loc": ["body"], "msg": "bad"}]'
    assert Answer(401, {"error": "unauthorized"}).detail() == "unauthorized"
    assert Answer(500, {"error": {"message": "db down", "code": "500"}}).detail() == "db down"
    assert Answer(None, None, "timed out").detail() == "timed out"
    assert len(Answer(400, {"detail": "y" * 5000}).detail()) == 200
