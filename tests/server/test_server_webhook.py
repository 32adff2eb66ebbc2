"""Webhook notices to a real loopback receiver: signed, batched, retried after a 500, once per
episode, never in the way of ingest, and kept in the database (the outbox) until delivered."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest
from workspace_agent_server.app import maintenance_round

from tests.server.conftest import make_report, rule

# Left out of `scripts/test --fast`: each test waits on real webhook deliveries and retries.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]
HOOK_SECRET = "hook-secret-Qm3Zr8Tn2Wx6Yp4"


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)  # answers in order; then 200
    delay_s: float = 0.0
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            assert time.monotonic() < deadline, f"receiver got {len(self.got)} of {n} requests"
            await anyio.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            time.sleep(rec.delay_s)
            status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield rec
    server.shutdown()
    server.server_close()


def hook_settings(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {
        "webhook_url": receiver.url,
        "webhook_secret": HOOK_SECRET,
        "webhook_batch_window_s": 0.3,
        "webhook_backoff_s": 0.05,
        **extra,
    }


def signature_ok(headers: dict[str, str], body: bytes) -> bool:
    want = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-drift-signature"], want)


async def test_newly_drifted_batched_signed_and_retried(api_factory, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    receiver.statuses = [500]
    async with api_factory(**hook_settings(receiver)) as api:
        for ws in ("ws-a", "ws-b"):
            token = await api.enroll(ws)
            assert (
                await api.report(token, make_report(ws, [rule("x", "drift")]))
            ).status_code == 200
        await receiver.wait_for(2)
        (h1, b1), (h2, b2) = receiver.got
        assert h1["x-drift-delivery"] == h2["x-drift-delivery"]  # the same notices again
        assert json.loads(b1)["events"] == json.loads(b2)["events"]
        assert len({e["id"] for e in json.loads(b2)["events"]}) == 2  # one id per notice
        assert signature_ok(h2, b2)
        assert not signature_ok({"x-drift-signature": h2["x-drift-signature"]}, b2 + b" ")
        events = json.loads(b2)["events"]
        assert sorted((e["type"], e["workspace"]["id"]) for e in events) == [
            ("drifted", "ws-a"),
            ("drifted", "ws-b"),
        ]
        assert events[0]["workspace"]["failing_rules"] == ["x"]
        # Still drifted: no new notice.
        api.clock.advance(60)
        await api.report(token, make_report("ws-b", [rule("x", "drift")], at=api.clock.now))
        await anyio.sleep(0.6)
        assert len(receiver.got) == 2
        metrics = (await api.admin("/metrics")).text
        assert 'drift_webhook_notices_total{result="delivered"} 2' in metrics
        assert 'drift_webhook_notices_total{result="retried"} 1' in metrics


async def test_newly_stale_notified_once_per_silence(api_factory, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    async with api_factory(**hook_settings(receiver, webhook_batch_window_s=0)) as api:
        token = await api.enroll("ws-quiet", owner="bob")
        await api.report(token, make_report("ws-quiet", [rule("x")], owner="bob"))
        ctx = api.app.state.ctx
        assert await maintenance_round(ctx) == 0
        api.clock.advance(3 * 60 + 1)
        assert await maintenance_round(ctx) == 1
        assert await maintenance_round(ctx) == 0  # once per silence
        await receiver.wait_for(1)
        headers, body = receiver.got[0]
        assert signature_ok(headers, body)
        (event,) = json.loads(body)["events"]
        assert (event["type"], event["workspace"]["id"], event["workspace"]["owner"]) == (
            "stale",
            "ws-quiet",
            "bob",
        )
        # Back, then silent again: a new notice.
        await api.report(token, make_report("ws-quiet", [rule("x")], owner="bob", at=api.clock.now))
        api.clock.advance(3 * 60 + 1)
        assert await maintenance_round(ctx) == 1
        await receiver.wait_for(2)


async def test_hanging_receiver_slows_no_ingest_and_loses_nothing(  # type: ignore[no-untyped-def]
    api_factory, receiver: Receiver
) -> None:
    """A receiver that hangs: reports are answered at once; the notices wait in the outbox (the
    gauge counts them, however many) and reach the receiver when it answers again."""
    receiver.delay_s = 1.5
    receiver.statuses = [500]
    async with api_factory(
        **hook_settings(
            receiver,
            webhook_batch_window_s=0,
            webhook_timeout_s=0.5,
            webhook_backoff_s=0.2,
            webhook_max_attempts=30,
        )
    ) as api:
        tokens = {ws: await api.enroll(ws) for ws in ("w1", "w2", "w3", "w4", "w5")}
        started = time.monotonic()
        for ws, token in tokens.items():
            resp = await api.report(token, make_report(ws, [rule("x", "drift")]))
            assert resp.status_code == 200
            await anyio.sleep(0.05)
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"ingest waited for the webhook ({elapsed:.2f}s)"
        metrics = (await api.admin("/metrics")).text
        assert "drift_webhook_queue 5" in metrics, metrics
        receiver.delay_s = 0
        mark = len(receiver.got)  # requests before this one timed out on the server's side
        deadline = time.monotonic() + 20
        ids: set[str] = set()
        while len(ids) < 5:
            assert time.monotonic() < deadline, receiver.got
            ids = {
                e["workspace"]["id"]
                for _, body in receiver.got[mark:]
                for e in json.loads(body)["events"]
            }
            await anyio.sleep(0.05)
        assert ids == set(tokens)
        deadline = time.monotonic() + 5
        while "drift_webhook_queue 0" not in (metrics := (await api.admin("/metrics")).text):
            assert time.monotonic() < deadline, metrics
            await anyio.sleep(0.05)
        assert "drift_webhook_failed_notices 0" in metrics


async def test_notice_is_in_the_report_transaction(api_factory, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    """No sender running (a receiver that is never asked): the notice is a row of the outbox as
    soon as the report is acknowledged, with the event a receiver will get."""
    import sqlalchemy as sa

    async with api_factory(**hook_settings(receiver, webhook_batch_window_s=60)) as api:
        token = await api.enroll("ws-tx")
        resp = await api.report(token, make_report("ws-tx", [rule("x", "drift")]))
        assert resp.status_code == 200
        engine = sa.create_engine(api.db_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text("SELECT kind, workspace_id, payload FROM webhook_outbox")
                ).all()
        finally:
            engine.dispose()
        assert [(r.kind, r.workspace_id) for r in rows] == [("drifted", "ws-tx")]
        event = json.loads(rows[0].payload)
        assert event["type"] == "drifted" and len(event["id"]) == 32
        assert receiver.got == []  # still in its batch window
