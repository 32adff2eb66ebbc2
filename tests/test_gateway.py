"""gateway.call / refusal: each kind of answer (and non-answer) becomes the right class of error."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.standins.litellm_info import Account, run_litellm_info
from tests.standins.stall import closed_port, stalled_server
from workspace_agent import gateway
from workspace_agent.errors import (
    EXIT_BAD_ANSWER,
    EXIT_BUDGET,
    EXIT_KEY_REFUSED,
    EXIT_NO_TRACKING,
    EXIT_UNREACHABLE,
    AgentError,
)

KEY = "sk-gw-test-Q7mN2pX9vB4c"


class _Canned(BaseHTTPRequestHandler):
    """Answers every request with the (status, content type, body) the test put on the server."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status, content_type, body = self.server.canned  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def canned() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _endpoint(url: str, timeout: float = 5.0) -> gateway.Endpoint:
    return gateway.Endpoint(url, KEY, timeout)


def _refusal_of(server: ThreadingHTTPServer, status: int, body: Any, content_type: str = "application/json") -> AgentError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    server.canned = (status, content_type, raw)  # type: ignore[attr-defined]
    endpoint = _endpoint(f"http://127.0.0.1:{server.server_address[1]}")
    answer = gateway.call(endpoint, "GET", "/key/info")
    assert answer.status == status
    return gateway.refusal(answer, endpoint)


def _litellm_error(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": str(code)}}


def test_a_success_is_parsed_and_the_key_is_sent_as_bearer() -> None:
    with run_litellm_info({KEY: Account(spend=1.5)}) as info:
        endpoint = _endpoint(info.url)
        answer = gateway.call(endpoint, "GET", "/key/info")
        body = gateway.json_object(answer, endpoint)
    assert answer.ok and body["info"]["spend"] == 1.5
    assert info.requests[-1].authorization == f"Bearer {KEY}"
    assert answer.elapsed_s > 0


def test_budget_exceeded_is_its_own_class_with_the_numbers(canned: ThreadingHTTPServer) -> None:
    body = _litellm_error("Budget has been exceeded! Current cost: 12.5, Max budget: 10.0", "budget_exceeded", 422)
    error = _refusal_of(canned, 422, body)
    assert isinstance(error, gateway.BudgetExhausted)
    assert (error.exit_code, error.spent, error.max_budget) == (EXIT_BUDGET, 12.5, 10.0)
    assert "$12.50 spent of $10.00" in error.message and KEY not in error.message


def test_budget_exceeded_as_429_is_still_the_budget(canned: ThreadingHTTPServer) -> None:
    body = _litellm_error("Budget has been exceeded! Current cost: 3.0, Max budget: 2.0", "budget_exceeded", 429)
    assert _refusal_of(canned, 429, body).exit_code == EXIT_BUDGET


@pytest.mark.parametrize(
    ("status", "body", "exit_code", "words"),
    [
        (401, _litellm_error("Authentication Error, Invalid proxy server token passed.", "auth_error", 401), EXIT_KEY_REFUSED, "refused key sk-…"),
        (401, _litellm_error("Authentication Error - Expired Key. Key Expiry time 2020-01-01", "expired_key", 401), EXIT_KEY_REFUSED, "Expired Key"),
        (403, {"detail": "forbidden"}, EXIT_KEY_REFUSED, "403: forbidden"),
        (403, _litellm_error("model not allowed", "key_model_access_denied", 403), EXIT_KEY_REFUSED, "does not let key"),
        (500, _litellm_error("Database not connected. Connect a database", "internal_server_error", 500), EXIT_NO_TRACKING, "no database"),
        (400, _litellm_error("No connected db.", "no_db_connection", 400), EXIT_NO_TRACKING, "DATABASE_URL"),
        (429, _litellm_error("Rate limit exceeded: 60 rpm", "rate_limit_error", 429), EXIT_BAD_ANSWER, "wait a minute"),
        (404, {"detail": "Not Found"}, EXIT_BAD_ANSWER, "AI_GATEWAY_URL should be the base URL"),
        (502, b"<html>bad gateway</html>", EXIT_BAD_ANSWER, "HTTP 502 (<html>bad gateway</html>)"),
    ],
)
def test_refusals_are_classified(canned: ThreadingHTTPServer, status: int, body: Any, exit_code: int, words: str) -> None:
    error = _refusal_of(canned, status, body)
    assert error.exit_code == exit_code
    assert words in error.message
    assert KEY not in error.message


def test_a_gateway_that_echoes_the_key_is_redacted(canned: ThreadingHTTPServer) -> None:
    error = _refusal_of(canned, 401, _litellm_error(f"bad key {KEY}", "auth_error", 401))
    assert KEY not in error.message and "bad key sk-…vB4c" in error.message


def test_a_non_json_success_is_not_litellm(canned: ThreadingHTTPServer) -> None:
    canned.canned = (200, "text/html", b"<html>login</html>")  # type: ignore[attr-defined]
    endpoint = _endpoint(f"http://127.0.0.1:{canned.server_address[1]}")
    with pytest.raises(AgentError) as caught:
        gateway.json_object(gateway.call(endpoint, "GET", "/key/info"), endpoint)
    assert caught.value.exit_code == EXIT_BAD_ANSWER
    assert "not JSON" in caught.value.message and "AI_GATEWAY_URL" in caught.value.message


def test_a_closed_port_is_unreachable_with_the_url() -> None:
    url = closed_port()
    with pytest.raises(AgentError) as caught:
        gateway.call(_endpoint(url), "GET", "/v1/models")
    assert caught.value.exit_code == EXIT_UNREACHABLE
    assert url in caught.value.message and "AI_GATEWAY_URL" in caught.value.message
    assert "refused" in caught.value.message.lower()


def test_a_stalled_gateway_times_out_with_the_timeout_named() -> None:
    with stalled_server() as url:
        started = time.monotonic()
        with pytest.raises(AgentError) as caught:
            gateway.call(_endpoint(url, timeout=0.5), "GET", "/v1/models")
        took = time.monotonic() - started
    assert caught.value.exit_code == EXIT_UNREACHABLE
    assert f"at {url} did not answer GET /v1/models within 0.5 s" in caught.value.message
    assert "--timeout" in caught.value.message
    assert took < 3


def test_the_provisioner_is_named_as_itself() -> None:
    url = closed_port()
    endpoint = gateway.Endpoint(url, KEY, 2.0, "the key provisioner", "PROVISIONER_URL")
    with pytest.raises(AgentError, match="cannot reach the key provisioner at .*check PROVISIONER_URL"):
        gateway.call(endpoint, "GET", "/api/v1/keys/info")
