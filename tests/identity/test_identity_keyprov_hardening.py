"""Issue 15, the key provisioner under attack: a victim's rate-limit budget, Coder lookups that a
flood of fresh workspace ids could multiply, oversized bodies, and a forged log line.
"""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.identity.conftest import PROVISIONER_SECRET
from tests.identity.provisioner_client import events, exchange, key_body, run
from tests.identity.test_identity_keyprov_process import (  # noqa: F401 (a fixture)
    platform_request,
    provisioner,
)
from tests.standins.coder_agent_api import CoderStandin
from tests.standins.litellm_keys import LitellmKeys

# Left out of `scripts/test --fast`: each test starts the key provisioner as a process.
pytestmark = pytest.mark.slow


@pytest.fixture
def prov_env(prov_env: dict[str, str]) -> dict[str, str]:
    """The identity tests' environment, with a short header-read timeout."""
    return {**prov_env, "KEY_PROVISIONER_HEADER_TIMEOUT_S": "2"}


def attack(ws_id: str, count: int, **request: Any) -> list[dict[str, Any]]:
    return [{"body": key_body(ws_id), **request} for _ in range(count)]


@pytest.mark.parametrize("identity", ["required", "legacy"])
def test_refused_requests_never_spend_a_victims_budget(
    prov_env: dict[str, str], coder: CoderStandin, identity: str
) -> None:
    """Finding: the limit was counted per body workspace_id before the identity check, so six
    refused requests from anyone holding the shared secret locked a victim's workspace out."""
    env = {**prov_env, "KEY_PROVISIONER_RATE_LIMIT": "3/60", "KEY_PROVISIONER_IDENTITY": identity}
    victim, mallory = coder.add_workspace(owner="alice"), coder.add_workspace(owner="mallory")
    flood = (
        # mallory's own agent token claiming the victim: refused (403) in both modes
        attack(victim.id, 6, agent_token=mallory.agent.token)
        # a dead agent token: refused
        + attack(victim.id, 6, agent_token=str(uuid.uuid4()))
        # no agent token: refused when identity is required, served as legacy otherwise
        + attack(victim.id, 6, agent_token=None)
    )
    mine = {"body": key_body(victim.id), "agent_token": victim.agent.token}
    answers = run(exchange(env, [*flood, mine, mine, mine, mine]))
    refused = answers[:12]
    assert {a.status for a in refused} == {403}
    unverified = [a.status for a in answers[12:18]]
    if identity == "required":
        assert set(unverified) == {403}
    else:  # the legacy budget of that id is spent: its own, not the verified workspace's
        assert unverified == [201, 200, 200, 429, 429, 429]
    victims = [a.status for a in answers[18:]]
    assert victims[:3] in ([201, 200, 200], [200, 200, 200]) and victims[3] == 429, victims
    assert answers[18].body["identity"] == "coder-agent-token"
    limited = [e.identity for e in events(env, "rate-limited")]
    assert limited.count("coder-agent-token") == 1


def test_fresh_workspace_ids_cannot_amplify_coder_lookups(
    prov_env: dict[str, str], coder: CoderStandin
) -> None:
    """Finding: every fresh workspace id was never limited and cost two Coder API calls."""
    env = {
        **prov_env,
        "KEY_PROVISIONER_CODER_LOOKUP_LIMIT": "10",
        "KEY_PROVISIONER_IDENTITY_CACHE_S": "30",
    }
    mallory = coder.add_workspace(owner="mallory")
    flood = [
        {"body": key_body(str(uuid.uuid4()), username="mallory"), "agent_token": token}
        for token in [mallory.agent.token] * 50 + [str(uuid.uuid4()) for _ in range(50)]
    ]
    answers = run(exchange(env, flood))
    statuses = [a.status for a in answers]
    assert set(statuses) == {403, 429} and statuses.count(429) >= 85, statuses
    assert len(coder.requests) <= 10, f"{len(coder.requests)} Coder calls for 100 claims"
    assert answers[-1].headers["retry-after"]


def test_unknown_keys_at_key_info_cannot_flood_litellm(
    prov_env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    """/api/v1/keys/info takes no other credential than the key it asks LiteLLM about: keys
    LiteLLM refuses are counted per source address, and once spent nothing more is asked."""
    env = {**prov_env, "KEY_PROVISIONER_CODER_LOOKUP_LIMIT": "10"}
    ws = coder.add_workspace()
    good = run(exchange(env, [{"body": key_body(ws.id), "agent_token": ws.agent.token}]))[0].key
    probes = [
        {"method": "GET", "path": "/api/v1/keys/info", "bearer": f"sk-guess-{i:04d}"}
        for i in range(60)
    ]
    own = {"method": "GET", "path": "/api/v1/keys/info", "bearer": good}
    answers = run(exchange(env, [own, own, *probes, own]))
    statuses = [a.status for a in answers]
    assert statuses[:2] == [200, 200]  # a good key is never counted
    assert statuses[2:12] == [401] * 10 and set(statuses[12:]) == {429}, statuses
    asked = [r for r in litellm.requests if r.target == "/key/info"]  # as the key itself
    assert len(asked) == 12, len(asked)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_16_kb_is_refused_before_it_is_read(
    prov_env: dict[str, str], chunked: bool
) -> None:
    big = b'{"workspace_id": "' + b"x" * (1024 * 1024) + b'"}'

    def chunks() -> Any:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    import httpx
    from key_provisioner.app import create_app
    from key_provisioner.settings import from_env

    async def send() -> list[httpx.Response]:
        app = create_app(from_env(prov_env))
        answers = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
                for path in ("/api/v1/keys/workspace", "/api/v1/keys/info", "/health", "/nope"):
                    body: Any = _aiter(chunks()) if chunked else big
                    answers.append(
                        await client.post(
                            path,
                            content=body,
                            headers={"Authorization": f"Bearer {PROVISIONER_SECRET}"},
                        )
                    )
        return answers

    answers = run(send())
    key_answer = answers[0]
    assert key_answer.status_code == 413 and "16384 bytes" in key_answer.json()["error"]
    for answer in answers:
        assert answer.headers["connection"] == "close"
        if chunked:
            assert answer.status_code in (413, 404, 405)
        else:
            assert answer.status_code == 413 and answer.json()["error"]


async def _aiter(items: Any) -> Any:
    for item in items:
        yield item


def test_a_user_name_with_a_newline_cannot_forge_a_log_line(
    provisioner: tuple[str, Path, dict[str, str]],  # noqa: F811 (the imported fixture)
    coder: CoderStandin,
) -> None:
    """Finding: a `username` with a newline wrote a forged `key-issued …` line into the log."""
    url, log, _env = provisioner
    forged = "alice\n2026-12-06 10:00:00,000 INFO key_provisioner: key-issued: workspace=victim"
    status, _ = platform_request(url, key_body(str(uuid.uuid4()), username=forged))
    assert status in (200, 201)
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert any("legacy request" in line for line in lines), text
    for line in lines:
        entry = json.loads(line)  # one JSON object a line, whatever the user name held
        assert {"at", "level", "logger", "message"} <= set(entry)
    assert not any(line.startswith("2026-12-06") for line in lines), text


def test_half_sent_requests_to_the_provisioner_are_closed(
    provisioner: tuple[str, Path, dict[str, str]],  # noqa: F811 (the imported fixture)
) -> None:
    """The header-read timeout (KEY_PROVISIONER_HEADER_TIMEOUT_S, 2 s in this fixture's run)."""
    url, _log, _env = provisioner
    port = int(url.rsplit(":", 1)[1])
    socks = []
    try:
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", port), timeout=15)
            sock.sendall(b"POST /api/v1/keys/workspace HTTP/1.1\r\nHost: p\r\n")
            socks.append(sock)
        for sock in socks:
            assert sock.recv(4096) == b""  # closed by the server, within the socket timeout
    finally:
        for sock in socks:
            sock.close()
