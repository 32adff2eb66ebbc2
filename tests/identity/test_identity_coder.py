"""coder_identity.CoderIdentity against a loopback stand-in of Coder's routes (real HTTP)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from coder_identity import CoderIdentity, CoderUnavailable, IdentityRefused, VerifiedWorkspace
from coder_identity.verify import IDENTITY_LOG_SOURCE_ID

from tests.standins.coder_agent_api import CoderStandin, run_coder

# Left out of `scripts/test --fast`: each test talks to a Coder stand-in over loopback.
pytestmark = pytest.mark.slow

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def coder() -> Iterator[CoderStandin]:
    with run_coder() as standin:
        yield standin


def identity(coder: CoderStandin, **kwargs: Any) -> CoderIdentity:
    kwargs.setdefault("cache_ttl", 0)
    return CoderIdentity(coder.url, coder.api_token, **kwargs)


def refused(coder: CoderStandin, token: str, claimed: str, **kwargs: Any) -> IdentityRefused:
    with pytest.raises(IdentityRefused) as caught:
        run(identity(coder, **kwargs).verify(token, claimed))
    return caught.value


def test_own_workspace_is_verified_with_coders_facts(coder: CoderStandin) -> None:
    ws = coder.add_workspace(owner="alice", name="dev", template="ai-dev")
    got = run(identity(coder).verify(ws.agent.token, ws.id))
    assert got == VerifiedWorkspace(
        workspace_id=ws.id,
        workspace_name="dev",
        owner="alice",
        owner_id=ws.owner_id,
        template_id=ws.template_id,
        template_name="ai-dev",
        agent_id=ws.agent.id,
        agent_name="main",
        proven_by="log-source",
    )
    agent_calls = coder.agent_requests()
    assert [(r.method, r.path) for r in agent_calls] == [
        ("POST", "/api/v2/workspaceagents/me/log-source")
    ]
    assert agent_calls[0].token == ws.agent.token
    # The workspace lookup went with the server's own token, never the agent's.
    lookups = [r for r in coder.requests if r.path.startswith("/api/v2/workspaces/")]
    assert [r.token for r in lookups] == [coder.api_token]


def test_the_identity_log_source_is_created_once_per_agent(coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    checker = identity(coder)
    for _ in range(3):
        run(checker.verify(ws.agent.token, ws.id))
    assert list(coder.log_sources) == [(ws.agent.id, IDENTITY_LOG_SOURCE_ID)]


def test_claiming_another_workspace_is_refused(coder: CoderStandin) -> None:
    mine, theirs = coder.add_workspace(owner="mallory"), coder.add_workspace(owner="alice")
    error = refused(coder, mine.agent.token, theirs.id)
    assert error.reason == "mismatch"
    assert theirs.id in error.message and "only ask for itself" in error.message


def test_a_token_of_an_old_build_is_refused(coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    old = ws.agent.token
    coder.rebuild(ws)
    error = refused(coder, old, ws.id)
    assert error.reason == "token"
    assert "revoked" in error.message and "restart the workspace" in error.message
    assert run(identity(coder).verify(ws.agent.token, ws.id)).agent_id == ws.agent.id


def test_a_stopped_workspace_has_no_valid_token(coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    token = ws.agent.token
    coder.stop(ws)
    assert refused(coder, token, ws.id).reason == "token"


def test_an_unknown_workspace_is_refused(coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    other = str(uuid.uuid4())
    error = refused(coder, ws.agent.token, other)
    assert error.reason == "unknown-workspace" and other in error.message


def test_malformed_input_is_refused_without_asking_coder(coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    assert refused(coder, "not-a-token", ws.id).reason == "token"
    error = refused(coder, ws.agent.token, "ws-1")
    assert error.reason == "unknown-workspace" and "data.coder_workspace.me.id" in error.message
    assert coder.requests == []


@pytest.mark.parametrize(
    ("version", "proven_by"),
    [
        ("v2.24.2", "log-source"),
        ("v2.12.0", "log-source"),
        ("v2.11.3", "manifest"),
        ("v2.3.3", "manifest"),
    ],
)
def test_each_coder_generation_is_understood(version: str, proven_by: str) -> None:
    with run_coder(version=version) as coder:
        ws = coder.add_workspace(owner="bob")
        other = coder.add_workspace(owner="eve")
        got = run(identity(coder).verify(ws.agent.token, ws.id))
        assert (got.proven_by, got.owner, got.agent_id) == (proven_by, "bob", ws.agent.id)
        assert refused(coder, ws.agent.token, other.id).reason == "mismatch"
        paths = [r.path for r in coder.agent_requests()]
        if proven_by == "manifest":  # tried the new route first, then fell back
            assert paths[:2] == [
                "/api/v2/workspaceagents/me/log-source",
                "/api/v2/workspaceagents/me/manifest",
            ]
        else:
            assert "/api/v2/workspaceagents/me/manifest" not in paths


def test_coder_down_is_unavailable_not_refused(coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    checker = identity(coder)
    coder.mode = "unavailable"
    with pytest.raises(CoderUnavailable) as caught:
        run(checker.verify(ws.agent.token, ws.id))
    assert "HTTP 503" in caught.value.message and coder.url in caught.value.message
    coder.stop_serving()
    with pytest.raises(CoderUnavailable) as caught:
        run(checker.verify(ws.agent.token, ws.id))
    assert f"cannot reach Coder at {coder.url}" in caught.value.message
    assert ws.agent.token not in caught.value.message


def test_slow_coder_times_out(coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    coder.delay = 1.0
    with pytest.raises(CoderUnavailable) as caught:
        run(identity(coder, timeout=0.3).verify(ws.agent.token, ws.id))
    assert "did not answer within 0.3 s" in caught.value.message


def test_a_wrong_api_token_is_a_configuration_problem(coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    checker = CoderIdentity(coder.url, "wrong-token-Qp7sV2", cache_ttl=0)
    with pytest.raises(CoderUnavailable) as caught:
        run(checker.verify(ws.agent.token, ws.id))
    assert "CODER_API_TOKEN" in caught.value.message
    assert "wrong-token-Qp7sV2" not in caught.value.message


def test_a_url_that_is_not_coder_says_so(coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    coder.mode = "notcoder"  # every route 404, as some other web server would answer
    with pytest.raises(CoderUnavailable) as caught:
        run(identity(coder).verify(ws.agent.token, ws.id))
    assert "neither" in caught.value.message and "CODER_URL" in caught.value.message


def test_positive_answers_are_cached_for_the_ttl_only(coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    clock = FakeClock()
    checker = identity(coder, cache_ttl=30, clock=clock)
    run(checker.verify(ws.agent.token, ws.id))
    asked = len(coder.requests)
    run(checker.verify(ws.agent.token, ws.id))
    assert len(coder.requests) == asked  # served from the cache
    old = ws.agent.token
    coder.rebuild(ws)
    clock.now += 31
    with pytest.raises(IdentityRefused):
        run(checker.verify(old, ws.id))
    assert len(coder.requests) > asked


def test_refusals_are_not_cached(coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    checker = identity(coder, cache_ttl=30, clock=FakeClock())
    coder.stop(ws)
    with pytest.raises(IdentityRefused):
        run(checker.verify(str(uuid.uuid4()), ws.id))
    coder.rebuild(ws)
    assert run(checker.verify(ws.agent.token, ws.id)).workspace_id == ws.id


def test_build_info(coder: CoderStandin) -> None:
    assert run(identity(coder).build_info()) == "v2.24.2"
    coder.stop_serving()
    assert run(identity(coder).build_info()) is None


def test_repr_hides_the_token(coder: CoderStandin) -> None:
    assert coder.api_token not in repr(identity(coder))
