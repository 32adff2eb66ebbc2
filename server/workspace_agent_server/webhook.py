"""Webhook notices: workspaces that newly drift or newly go stale, batched, signed, retried.

Ingest only calls `offer()`, which never waits: the queue is bounded and a full queue drops the
notice and counts it (`drift_webhook_notices_total{result="dropped"}`). A background task sends
batches; each POST carries `X-Drift-Signature: sha256=<HMAC-SHA256 of the body>` and an
`X-Drift-Delivery` id that stays the same across retries, so a receiver can drop repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from . import __version__
from .auth import sign_body
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("workspace_agent_server.webhook")
MAX_BATCH = 100
MAX_BACKOFF_S = 60.0


class Notifier:
    """Owns the queue and the sender task (a class because it has a lifecycle)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        assert settings.webhook_url and settings.webhook_secret
        self.url = settings.webhook_url
        self.secret = settings.webhook_secret
        self.settings = settings
        self.metrics = metrics
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(settings.webhook_queue_size)
        self._task: asyncio.Task[None] | None = None

    def offer(self, kind: str, workspace: dict[str, Any]) -> bool:
        """Queue a notice without waiting; False (and counted) when the queue is full."""
        notice = {"type": kind, "at": datetime.now(UTC).isoformat(), "workspace": workspace}
        try:
            self.queue.put_nowait(notice)
            return True
        except asyncio.QueueFull:
            self.metrics.count_webhook("dropped")
            return False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="drift-webhook")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.queue.qsize():
            log.warning("webhook: %d notice(s) not sent at shutdown", self.queue.qsize())

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout_s) as client:
            while True:
                batch = [await self.queue.get()]
                deadline = asyncio.get_running_loop().time() + self.settings.webhook_batch_window_s
                while len(batch) < MAX_BATCH:
                    left = deadline - asyncio.get_running_loop().time()
                    if left <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(self.queue.get(), left))
                    except TimeoutError:
                        break
                await self._deliver(client, batch)

    async def _deliver(self, client: httpx.AsyncClient, events: list[dict[str, Any]]) -> bool:
        body = json.dumps(
            {
                "source": "workspace-agent-server",
                "version": __version__,
                "sent_at": datetime.now(UTC).isoformat(),
                "events": events,
            },
            separators=(",", ":"),
            default=str,
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Drift-Signature": sign_body(body, self.secret),
            "X-Drift-Delivery": uuid.uuid4().hex,
            "User-Agent": f"workspace-agent-server/{__version__}",
        }
        delay = self.settings.webhook_backoff_s
        for attempt in range(1, self.settings.webhook_max_attempts + 1):
            try:
                resp = await client.post(self.url, content=body, headers=headers)
                if resp.is_success:
                    self.metrics.count_webhook("delivered", len(events))
                    return True
                problem = f"HTTP {resp.status_code}"
                if resp.status_code < 500 and resp.status_code not in (408, 429):
                    log.warning(
                        "webhook: %s refused %d notice(s) with %s; not retrying",
                        self.url,
                        len(events),
                        problem,
                    )
                    break
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt == self.settings.webhook_max_attempts:
                log.warning(
                    "webhook: giving up on %d notice(s) after %d attempts (%s)",
                    len(events),
                    attempt,
                    problem,
                )
                break
            self.metrics.count_webhook("retried")
            await asyncio.sleep(delay * random.uniform(0.8, 1.0))
            delay = min(delay * 2, MAX_BACKOFF_S)
        self.metrics.count_webhook("failed", len(events))
        return False
