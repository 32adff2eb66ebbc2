"""The token cache lets known tokens in without a database read, and never lets a revoked or
replaced token write: in this process it is dropped at once (refused before the body is read),
and a change made by another server process is caught inside the transaction that writes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from workspace_agent_server.token_cache import TokenCache

from tests.server.conftest import Api, make_report, rule
from workspace_agent import wire


def test_put_get_forget() -> None:
    cache = TokenCache()
    cache.put("h1", "ws-1", cache.generation)
    assert cache.get("h1") == "ws-1"
    cache.put("h2", "ws-1", cache.generation)  # re-enrolled: the new token replaces the old
    assert (cache.get("h1"), cache.get("h2"), len(cache)) == (None, "ws-1", 1)
    cache.forget("ws-1")
    assert cache.get("h2") is None and len(cache) == 0


def test_a_lookup_that_began_before_a_forget_is_not_kept() -> None:
    cache = TokenCache()
    before = cache.generation  # a lookup starts and reads the token as valid …
    cache.forget("ws-1")  # … meanwhile the token is revoked
    cache.put("h1", "ws-1", before)  # the stale answer comes back
    assert cache.get("h1") is None
    cache.put("h1", "ws-1", cache.generation)
    assert cache.get("h1") == "ws-1"


def test_discard_drops_only_that_token() -> None:
    cache = TokenCache()
    cache.put("old", "ws-1", cache.generation)
    cache.put("other", "ws-2", cache.generation)
    cache.discard("old")
    cache.discard("never-seen")
    assert (cache.get("old"), cache.get("other")) == (None, "ws-2")


def test_bounded_oldest_goes_first() -> None:
    cache = TokenCache(max_entries=3)
    for i in range(5):
        cache.put(f"h{i}", f"ws-{i}", cache.generation)
    assert len(cache) == 3
    assert [cache.get(f"h{i}") for i in range(5)] == [None, None, "ws-2", "ws-3", "ws-4"]


@pytest.mark.anyio
async def test_revoke_drops_the_token_before_its_body_is_read(api: Api) -> None:
    token = await api.enroll("ws-1")
    assert (await api.report(token, make_report("ws-1", [rule("a")]))).status_code == 200
    assert api.app.state.ctx.tokens.get(_hash(token)) == "ws-1"  # known: no database read
    resp = await api.admin(f"{wire.WORKSPACES_PATH}/ws-1/revoke", method="POST")
    assert resp.status_code == 200
    # A body that is not even JSON: refused for the token (401), not for the body (422).
    refused = await api.report(token, b"{not json")
    assert refused.status_code == 401 and refused.json()["reason"] == "revoked"


@pytest.mark.anyio
async def test_revoke_in_another_process_is_refused_at_once(
    api_factory: Callable[..., Any],
) -> None:
    """Two apps on one database stand for two uvicorn workers: worker 1 has the token cached,
    worker 2 revokes it; worker 1 must refuse the next report and store nothing."""
    async with api_factory() as one, api_factory() as two:
        token = await one.enroll("ws-1")
        assert (await one.report(token, make_report("ws-1", [rule("a")]))).status_code == 200
        assert one.app.state.ctx.tokens.get(_hash(token)) == "ws-1"
        assert (
            await two.admin(f"{wire.WORKSPACES_PATH}/ws-1/revoke", method="POST")
        ).status_code == 200
        before = one.snapshot()
        refused = await one.report(token, make_report("ws-1", [rule("a", "drift")]))
        assert refused.status_code == 401 and refused.json()["reason"] == "revoked"
        assert one.snapshot() == before
        assert one.app.state.ctx.tokens.get(_hash(token)) is None  # and no longer cached
        assert (await one.report(token, b"{not json")).status_code == 401


@pytest.mark.anyio
async def test_reenrolled_in_another_process_old_token_stops(
    api_factory: Callable[..., Any],
) -> None:
    async with api_factory() as one, api_factory() as two:
        old = await one.enroll("ws-1")
        assert (await one.report(old, make_report("ws-1", [rule("a")]))).status_code == 200
        new = await two.enroll("ws-1")
        before = one.snapshot()
        refused = await one.report(old, make_report("ws-1", [rule("a", "drift")]))
        assert refused.status_code == 401 and refused.json()["reason"] == "unauthorized"
        assert one.snapshot() == before
        assert (await one.report(new, make_report("ws-1", [rule("a")]))).status_code == 200


def _hash(token: str) -> str:
    from workspace_agent_server.auth import token_hash

    return token_hash(token)
