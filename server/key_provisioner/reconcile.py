"""The reconcile loop: revoke the keys of workspaces that Coder says are gone.

Coder has no webhook for workspace deletion that reaches us reliably (the template's delete hook
is best effort: it runs on the Coder provisioner and may not reach this service), so the
provisioner asks Coder about every workspace it issued a key to, every
`KEY_PROVISIONER_RECONCILE_INTERVAL_S`.

It never revokes on doubt:

* only Coder's 410 Gone counts (coder_status.py), and it must be said twice, the second time
  `KEY_PROVISIONER_RECONCILE_CONFIRM_S` later;
* when Coder cannot be asked (down, slow, 5xx, the API token refused), the pass stops asking
  after a few failures (or when every question failed, or any confirming one did), says so in
  one log line and in the status, and revokes nothing;
* a safety brake: a pass that finds more gone workspaces than
  max(`…_MAX_ALWAYS`, `…_MAX_FRACTION` × workspaces Coder knows) revokes none of them and logs an
  error (a Coder restored from an old backup, or pointed at another deployment, would otherwise
  revoke a fleet). An admin can then revoke them one by one. "Knows": present, deleting or gone;
  ids Coder answers 404 for do not count, or made-up ids (legacy mode hands a key to any id)
  would loosen the brake.
* a limit across passes: the brake holds per pass only, so whoever controls Coder's answers (or
  a MITM on an http:// CODER_URL) could still revoke MAX_ALWAYS workspaces every pass, a fleet
  in a day. At most `…_LIMIT` (N/seconds, default 100 per 24 h) workspaces are revoked by the
  loop in any rolling window; the count is in the store (a restart does not reset it). Over it,
  the rest wait (they stay live in the store and are asked about again), the pass is `throttled`
  (an ERROR line, a `reconcile-throttled` event, `held` in the result, `window` in the status).
  Admin and delete-hook revocations are not counted and never wait.

Queued revocations (rotations, earlier passes whose LiteLLM call failed) are retried first.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from key_provisioner.coder_status import CoderWorkspaces, WorkspaceState
from key_provisioner.revoke import Revoker
from key_provisioner.store import Store

MIN_ABORT_FAILURES = 3  # unavailable answers before a pass stops asking …
ABORT_FRACTION = 0.1  # … or this share of the workspaces to check, whichever is larger


@dataclass(frozen=True)
class ReconcileSettings:
    interval_s: float = 300.0  # 0: no loop (passes only on an admin's request)
    confirm_s: float = 2.0
    max_fraction: float = 0.1
    max_always: int = 3
    batch: int = 10_000  # workspaces asked about per pass, the longest unchecked first
    concurrency: int = 8
    window_max: int = 100  # workspaces the loop may revoke in any …
    window_s: float = 86400.0  # … this many seconds (persisted: see the module's docstring)


@dataclass
class PassResult:
    started_at: str
    duration_s: float = 0.0
    checked: int = 0
    present: int = 0
    deleting: int = 0
    gone: int = 0
    unknown: int = 0
    unavailable: int = 0
    revoked: int = 0
    held: int = 0  # gone, not revoked: the window limit was reached
    retried_done: int = 0
    retried_failed: int = 0
    outcome: str = "ok"  # ok | coder-unavailable | braked | throttled | failed
    problem: str | None = None
    gone_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def brake_limit(checked: int, settings: ReconcileSettings) -> int:
    """How many gone workspaces one pass may revoke."""
    return max(settings.max_always, math.floor(settings.max_fraction * checked))


class Reconciler:
    def __init__(
        self,
        coder: CoderWorkspaces,
        store: Callable[[], Store],
        revoker: Revoker,
        hold: Callable[[str], AbstractAsyncContextManager[None]],
        settings: ReconcileSettings,
        log: logging.Logger,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._coder = coder
        self._store = store
        self._revoker = revoker
        self._hold = hold  # the per-workspace lock of key requests
        self.settings = settings
        self._log = log
        self._sleep = sleep
        self._wall_clock = wall_clock  # epoch seconds: the window outlives the process
        self._running = asyncio.Lock()
        self.last: PassResult | None = None
        self.passes = 0

    async def run_pass(self) -> PassResult:
        """One pass (never two at once); the result is also kept as `last`."""
        async with self._running:
            result = PassResult(datetime.now(UTC).isoformat(timespec="seconds"))
            t0 = time.perf_counter()
            try:
                await self._pass(result)
            except Exception as exc:  # noqa: BLE001 - a pass must never end the loop
                result.outcome, result.problem = "failed", f"{type(exc).__name__}: {exc}"[:300]
                self._log.error("reconcile pass failed: %s", result.problem)
            result.duration_s = round(time.perf_counter() - t0, 3)
            self.last, self.passes = result, self.passes + 1
            self._report(result)
            return result

    async def run_forever(self) -> None:
        """Every interval, a pass; the first one soon after start."""
        delay = min(self.settings.interval_s, 1.0)
        while True:
            await self._sleep(delay)
            await self.run_pass()
            delay = self.settings.interval_s

    async def _pass(self, result: PassResult) -> None:
        drained = await self._revoker.drain()
        result.retried_done, result.retried_failed = drained.done, drained.failed
        targets = self._store().to_check(self.settings.batch)
        abort_after = max(MIN_ABORT_FAILURES, math.ceil(ABORT_FRACTION * len(targets)))
        answers: dict[str, WorkspaceState] = {}
        async with self._coder.client() as client:
            await self._ask_all(client, [w for w, _ in targets], answers, result, abort_after)
            if result.outcome == "coder-unavailable":
                return
            gone = [w for w, a in answers.items() if a.state == "gone"]
            if gone:
                await self._sleep(self.settings.confirm_s)
                again: dict[str, WorkspaceState] = {}
                await self._ask_all(client, gone, again, result, abort_after, second=True)
                if result.outcome == "coder-unavailable":
                    return
                gone = [w for w in gone if again[w].state == "gone"]
        for answer in answers.values():
            setattr(result, answer.state, getattr(result, answer.state) + 1)
        result.checked = len(answers)
        result.gone = len(gone)
        result.gone_ids = sorted(gone)[:50]
        # Every answered workspace goes to the back of the queue (404s too, so they cannot keep
        # others from being asked when the fleet is larger than a batch).
        self._store().checked([w for w, a in answers.items() if a.state != "unavailable"])
        known = result.present + result.deleting + len(gone)
        limit = brake_limit(known, self.settings)
        if len(gone) > limit:
            result.outcome = "braked"
            result.problem = (
                f"Coder says {len(gone)} of the {known} workspaces it knows are gone, more than this "
                f"pass may revoke ({limit}: KEY_PROVISIONER_RECONCILE_MAX_FRACTION="
                f"{self.settings.max_fraction:g}, …_MAX_ALWAYS={self.settings.max_always}); nothing "
                "was revoked. If they really were deleted, revoke them with the admin API or raise "
                "the limits for one pass"
            )
            self._store().event(
                "reconcile-braked",
                "*",
                "reconcile",
                gone=len(gone),
                checked=result.checked,
                known=known,
                limit=limit,
            )
            return
        room = self.window_room()
        held: list[str] = []
        for workspace_id in gone:
            if result.revoked >= room:
                held.append(workspace_id)
                continue
            async with self._hold(workspace_id.lower()):
                if await self._revoker.revoke_workspace(
                    workspace_id, "workspace-deleted", "reconcile", counted_at=self._wall_clock()
                ):
                    result.revoked += 1
        if held:
            self._throttled(result, held)

    def window_revoked(self) -> int:
        """How many workspaces the loop revoked in the current window (from the store)."""
        return self._store().reconcile_revoked_since(self._wall_clock() - self.settings.window_s)

    def window_room(self) -> int:
        """How many more workspaces the loop may revoke now."""
        return max(self.settings.window_max - self.window_revoked(), 0)

    def _throttled(self, result: PassResult, held: list[str]) -> None:
        result.outcome, result.held = "throttled", len(held)
        result.problem = (
            f"{len(held)} workspaces Coder says are gone were not revoked: the loop has revoked "
            f"{self.settings.window_max} in the last {self.settings.window_s:g} s, its limit "
            f"(KEY_PROVISIONER_RECONCILE_LIMIT={self.settings.window_max}/"
            f"{self.settings.window_s:g}); they are revoked once the window has room. If Coder "
            "really deleted that many, revoke them with the admin API or raise the limit; if not, "
            "check Coder (and CODER_URL)"
        )
        self._store().event(
            "reconcile-throttled",
            "*",
            "reconcile",
            held=len(held),
            revoked=result.revoked,
            limit=self.settings.window_max,
            window_s=self.settings.window_s,
            held_ids=sorted(held)[:50],
        )

    async def _ask_all(
        self,
        client: Any,
        workspace_ids: list[str],
        answers: dict[str, WorkspaceState],
        result: PassResult,
        abort_after: int,
        *,
        second: bool = False,
    ) -> None:
        """Ask about each workspace, `concurrency` at a time; stop asking once Coder failed
        `abort_after` times (the pass is then `coder-unavailable`)."""
        semaphore = asyncio.Semaphore(self.settings.concurrency)
        failures: list[str] = []

        async def one(workspace_id: str) -> None:
            async with semaphore:
                if len(failures) >= abort_after:
                    return
                answer = await self._coder.state(client, workspace_id)
                if answer.state == "unavailable":
                    failures.append(answer.detail)
                answers[workspace_id] = answer

        await asyncio.gather(*(one(w) for w in workspace_ids))
        every = bool(workspace_ids) and len(failures) == len(workspace_ids)
        if len(failures) >= abort_after or every or (second and failures):
            result.outcome = "coder-unavailable"
            result.unavailable = len(failures)
            result.problem = (
                f"Coder at {self._coder.base_url} could not be asked ({len(failures)} failed "
                f"requests, e.g. {failures[0]}); nothing was revoked this pass"
            )

    def _report(self, result: PassResult) -> None:
        line = (
            "reconcile pass: %s in %.2f s; checked=%d present=%d deleting=%d gone=%d unknown=%d "
            "revoked=%d retried=%d/%d"
        )
        args = (
            result.outcome,
            result.duration_s,
            result.checked,
            result.present,
            result.deleting,
            result.gone,
            result.unknown,
            result.revoked,
            result.retried_done,
            result.retried_done + result.retried_failed,
        )
        if result.outcome == "ok" and result.unavailable:
            self._log.warning(line + " (%d questions to Coder failed)", *args, result.unavailable)
        elif result.outcome == "ok":
            self._log.info(line, *args)
        else:
            self._log.error(line + ": %s", *args, result.problem)

    def status(self) -> dict[str, Any]:
        revoked = self.window_revoked()
        return {
            "interval_s": self.settings.interval_s,
            "passes": self.passes,
            "window": {
                "limit": self.settings.window_max,
                "window_s": self.settings.window_s,
                "revoked": revoked,
                "room": max(self.settings.window_max - revoked, 0),
            },
            "last": self.last.to_json() if self.last else None,
        }
