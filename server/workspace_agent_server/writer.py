"""Group commit: reports wait in a queue; one writer task takes all that are waiting and stores
them in one transaction on its own thread, then answers each request.

Why: one transaction per report spent most of its time on BEGIN/COMMIT, a thread hop and the
database's per-commit work. Here concurrent reports share one commit (and one fsync), and the
thread hop is paid once per batch. With no concurrency a batch is one report, so nothing waits
for company: a report waits at most for the batch ahead of it.

Guarantees:
- A request is answered only after the transaction holding its report has committed (the
  agent deletes a report from its on-disk queue when it gets the answer).
- Reports are written in arrival order, so two reports of one workspace apply in the order
  they came in.
- If a batch fails (a database error), each of its reports is tried again in a transaction of its
  own, so one bad report cannot fail the others; a report that fails alone gets the error.
- With `notify`, the webhook notice of a workspace that newly drifted is stored in the outbox in
  the transaction of its report (outbox.py), then `on_notices` wakes this process's sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from workspace_agent.wire import Report

from . import outbox, queries
from .db import write_tx

log = logging.getLogger("workspace_agent_server.writer")
MAX_BATCH = 256  # reports per transaction: bounds how long one batch holds the write lock


@dataclass
class Pending:
    item: queries.IngestItem
    done: asyncio.Future[queries.IngestResult] = field(repr=False)


@dataclass
class BatchStats:
    batches: int = 0
    reports: int = 0
    largest: int = 0
    retried_alone: int = 0  # reports retried in their own transaction after a batch failed


class Writer:
    """The queue, the writer task and its thread (one database connection at a time)."""

    def __init__(
        self,
        engine: Engine,
        max_batch: int = MAX_BATCH,
        notify: bool = False,
        on_notices: Callable[[], None] | None = None,
        notice_window_s: float = 0.0,
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.notify = notify
        self.on_notices = on_notices
        self.notice_window_s = notice_window_s
        self._noticed = False  # set by the writer thread, read by the task after each batch
        self.stats = BatchStats()
        self._closing = False
        self._queue: asyncio.Queue[Pending | None] = asyncio.Queue()
        self._thread: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift-writer")
        self._task = asyncio.create_task(self._run(), name="drift-writer")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        if self._task is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    async def submit(
        self, workspace_id: str, token_hash: str | None, report: Report, received_at: datetime
    ) -> queries.IngestResult:
        """Queue one report; returns once it is committed (or raises the database's error)."""
        if self._closing or self._task is None or self._task.done():
            raise RuntimeError("the report writer is not running (the app's lifespan starts it)")
        done: asyncio.Future[queries.IngestResult] = asyncio.get_running_loop().create_future()
        item = queries.IngestItem(workspace_id, report, received_at, token_hash)
        self._queue.put_nowait(Pending(item, done))
        # A request cancelled while waiting (client gone) cancels only its future: the report is
        # still written, and a resend of it is answered as a duplicate.
        return await done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                outcomes = await loop.run_in_executor(self._thread, self._write, batch)
            except asyncio.CancelledError:
                # Not known whether the batch committed: an error makes the agents send again
                # (a report stored already is then answered as a duplicate).
                self._answer(batch, [RuntimeError("the server stopped while writing")] * len(batch))
                raise
            except Exception as exc:  # noqa: BLE001 (_write returns errors; every waiter must hear)
                outcomes = [exc] * len(batch)
            self._answer(batch, outcomes)
            if self._noticed:
                self._noticed = False
                if self.on_notices is not None:
                    self.on_notices()

    @staticmethod
    def _answer(batch: list[Pending], outcomes: list[Any]) -> None:
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.done.done():
                continue
            if isinstance(outcome, BaseException):
                item.done.set_exception(outcome)
            else:
                item.done.set_result(outcome)

    def _write(self, batch: list[Pending]) -> list[queries.IngestResult | BaseException]:
        """On the writer thread: the batch in one transaction; on failure, one by one."""
        self.stats.batches += 1
        self.stats.reports += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        try:
            with write_tx(self.engine) as conn:
                return self._store(conn, [item.item for item in batch])
        except Exception as exc:  # noqa: BLE001
            if len(batch) == 1:
                return [exc]
            log.warning(
                "a batch of %d reports failed (%s); writing them one by one", len(batch), exc
            )
        outcomes: list[queries.IngestResult | BaseException] = []
        for item in batch:
            self.stats.retried_alone += 1
            try:
                with write_tx(self.engine) as conn:
                    outcomes.append(self._store(conn, [item.item])[0])
            except Exception as exc:  # noqa: BLE001
                outcomes.append(exc)
        return outcomes

    def _store(self, conn: Any, items: list[queries.IngestItem]) -> list[queries.IngestResult]:
        """The reports and, in the same transaction, the notices they cause."""
        results = queries.ingest_many(conn, items)
        if self.notify:
            drifted = [r.workspace for r in results if r.newly_drifted]
            if outbox.add(conn, "drifted", drifted, self.notice_window_s):
                self._noticed = True
        return results
