"""Webhook notices: workspaces that newly drift or newly go stale, batched, signed, retried.

Notices are rows of the outbox (outbox.py), written in the transaction that changes the state;
ingest never waits for the webhook. A notice is due one batch window after it was stored, and
the notices stored within that window go with it in one POST, whichever replica sends them.
Every server process runs a sender: woken when its own writer stored notices (it sends them when
their window ends) and every poll interval for the rest (other replicas' notices, ones whose
backoff ended, leases of a replica that died). Each POST carries `X-Drift-Signature:
sha256=<HMAC-SHA256 of the body>` and `X-Drift-Delivery`, a digest of the notice ids in it (the
same on a resend of the same batch); each event has its own `id`, the same on every resend in
any batch, so a receiver drops repeats by it. On a graceful stop the sender sends what is due or
still in its window (bounded by the webhook timeout) and hands its leases back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import Engine

from . import __version__, outbox
from .auth import sign_body
from .db import write_tx
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("workspace_agent_server.webhook")
MAX_BATCH = 100
MAX_BACKOFF_S = 60.0
RunDb = Callable[..., Awaitable[Any]]


def lease_s(settings: Settings) -> float:
    """How long a claimed notice stays with its sender: longer than one POST can take."""
    return 2 * settings.webhook_timeout_s + 5


def delivery_id(notices: Sequence[outbox.Notice]) -> str:
    return hashlib.sha256(",".join(n.notice_id for n in notices).encode()).hexdigest()[:32]


class Notifier:
    """The sender task of one process (a class because it has a lifecycle)."""

    def __init__(
        self, settings: Settings, metrics: Metrics, engine: Engine, run_db: RunDb, sender: str
    ) -> None:
        assert settings.webhook_url and settings.webhook_secret
        self.url = settings.webhook_url
        self.secret = settings.webhook_secret
        self.settings = settings
        self.metrics = metrics
        self.engine = engine
        self.run_db = run_db
        self.sender = sender
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retry_at: float | None = None  # loop time of the earliest backoff this sender set
        self._flushing = False  # stopping: also take notices still in their batch window

    def wake(self) -> None:
        """New notices were committed by this process: send them after the batch window."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="drift-webhook")

    async def stop(self) -> None:
        """Send what is due (at most one webhook timeout more), then hand the rest back."""
        if self._task is None:
            return
        self._flushing = True
        self._stop.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.settings.webhook_timeout_s + 1)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        except Exception:  # noqa: BLE001 (a failed sender must not stop the shutdown)
            log.exception("webhook sender failed")
        self._task = None
        try:
            released = await self.run_db(self._release)
            left = (await self.run_db(self._counts))["waiting"]
        except Exception as exc:  # noqa: BLE001 (the rows stay; their lease ends on its own)
            log.warning("webhook: could not hand back notices at shutdown (%s)", exc)
            return
        if left:
            log.warning(
                "webhook: %d notice(s) wait in the database for the next sender "
                "(%d were this process's)",
                left,
                released,
            )

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout_s) as client:
            while not self._stop.is_set():
                timeout = self.settings.webhook_poll_s
                if self._retry_at is not None:
                    left = self._retry_at - asyncio.get_running_loop().time()
                    timeout = min(timeout, max(left, 0))
                    self._retry_at = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                if self._wake.is_set() and not self._stop.is_set():
                    with contextlib.suppress(TimeoutError):  # the batch window, cut by a stop
                        await asyncio.wait_for(
                            self._stop.wait(), self.settings.webhook_batch_window_s
                        )
                self._wake.clear()
                try:
                    await self.drain(client)
                except Exception:  # noqa: BLE001 (e.g. the database is away: try next round)
                    log.exception("webhook: sending failed; the notices stay in the database")

    async def drain(self, client: httpx.AsyncClient) -> int:
        """Claim and send due notices until none are left; returns how many were claimed."""
        claimed = 0
        while True:
            batch = await self.run_db(self._claim)
            if not batch:
                return claimed
            claimed += len(batch)
            await self._send(client, batch)

    async def _send(self, client: httpx.AsyncClient, batch: list[outbox.Notice]) -> None:
        body = json.dumps(
            {
                "source": "workspace-agent-server",
                "version": __version__,
                "sent_at": datetime.now(UTC).isoformat(),
                "events": [n.event for n in batch],
            },
            separators=(",", ":"),
            default=str,
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Drift-Signature": sign_body(body, self.secret),
            "X-Drift-Delivery": delivery_id(batch),
            "User-Agent": f"workspace-agent-server/{__version__}",
        }
        retry = True
        try:
            resp = await client.post(self.url, content=body, headers=headers)
            if resp.is_success:
                await self.run_db(self._delivered, [n.id for n in batch])
                self.metrics.count_webhook("delivered", len(batch))
                return
            problem = f"HTTP {resp.status_code}"
            retry = resp.status_code >= 500 or resp.status_code in (408, 429)
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        last = [n for n in batch if not retry or n.attempts >= self.settings.webhook_max_attempts]
        again = [n for n in batch if n not in last]
        if again:
            attempts = min(n.attempts for n in again)
            delay = min(self.settings.webhook_backoff_s * 2 ** (attempts - 1), MAX_BACKOFF_S)
            await self.run_db(self._retry, [n.id for n in again], delay, problem)
            due = asyncio.get_running_loop().time() + delay
            self._retry_at = due if self._retry_at is None else min(self._retry_at, due)
            self.metrics.count_webhook("retried")
        if last:
            await self.run_db(self._give_up, [n.id for n in last], problem)
            self.metrics.count_webhook("failed", len(last))
            log.warning(
                "webhook: giving up on %d notice(s) for %s (%s)%s",
                len(last),
                self.url,
                problem,
                "" if retry else "; not retrying",
            )

    # --- database work (worker threads) --------------------------------------------------------

    def _claim(self) -> list[outbox.Notice]:
        with write_tx(self.engine) as conn:
            return outbox.claim(
                conn,
                self.sender,
                MAX_BATCH,
                lease_s(self.settings),
                self.settings.webhook_batch_window_s,
                self._flushing,
            )

    def _delivered(self, ids: list[int]) -> None:
        with write_tx(self.engine) as conn:
            outbox.delivered(conn, ids)

    def _retry(self, ids: list[int], delay: float, problem: str) -> None:
        with write_tx(self.engine) as conn:
            outbox.retry_later(conn, ids, delay, problem)

    def _give_up(self, ids: list[int], problem: str) -> None:
        with write_tx(self.engine) as conn:
            outbox.give_up(conn, ids, problem)

    def _release(self) -> int:
        with write_tx(self.engine) as conn:
            return outbox.release(conn, self.sender)

    def _counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return outbox.counts(conn)
