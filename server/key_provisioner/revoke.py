"""Revoking keys: record first, then block in LiteLLM, retried until LiteLLM agrees.

Why block and not delete: LiteLLM 1.108.7's `/key/delete` removes the key's row from
`LiteLLM_VerificationToken` (its alias, metadata, budget and running spend with it), while
`/key/block` only sets `blocked` on it: every later request with the key is refused with 401
("Authentication Error - Key is blocked"), and `/key/info`, `/key/list` and the spend views
still show the key, its workspace metadata and what it spent. Admins keep the history; the
drift server's spend view keeps its rows.

Every revocation goes through the store's queue (`pending_revocations`): the intent is committed
before LiteLLM is called, so a crash or a LiteLLM outage leaves a row that the next drain retries:
each reconcile pass or, when no reconcile loop runs (no CODER_URL, or an interval of 0), this
module's own retry loop (`retry_forever`, every interval or RETRY_S). Nothing is ever revoked
only in memory, and a rotated-out key never stays valid because Coder is not configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from key_provisioner.generations import current
from key_provisioner.keys import derive_key
from key_provisioner.litellm import LiteLLM, LiteLLMError
from key_provisioner.store import Pending, Store

RETRY_S = 60.0  # the retry loop's period when KEY_PROVISIONER_RECONCILE_INTERVAL_S is 0


@dataclass(frozen=True)
class Drained:
    done: int
    failed: int


class Revoker:
    def __init__(
        self,
        store: Callable[[], Store],
        litellm: LiteLLM,
        derivation_secret: str,
        log: logging.Logger,
    ) -> None:
        self._store = store
        self._litellm = litellm
        self._secret = derivation_secret
        self._log = log
        self._draining = asyncio.Lock()  # a pass and the retry loop never block one key twice

    def __repr__(self) -> str:
        return "Revoker()"

    async def revoke_workspace(
        self, workspace_id: str, reason: str, by: str, counted_at: float | None = None
    ) -> bool:
        """Mark the workspace revoked (no key is handed out for it again) and block its current
        key. False when it was revoked already. `counted_at`: see Store.mark_revoked."""
        db = self._store()
        stored = db.stored(workspace_id)
        try:  # the store may be behind LiteLLM (another replica rotated, a lost database)
            generation, _facts, _steps = await current(
                self._litellm, self._secret, workspace_id, stored.generation if stored else 0
            )
        except LiteLLMError:
            generation = stored.generation if stored else 0  # queued; retried by each pass
        if not db.mark_revoked(workspace_id, generation, reason, counted_at):
            return False
        db.event("workspace-revoked", workspace_id, by, reason=reason, generation=generation)
        self._log.warning(
            "workspace revoked: workspace=%s generation=%d reason=%s by=%s",
            workspace_id,
            generation,
            reason,
            by,
        )
        await self.block(Pending(workspace_id, generation, reason, 0))
        return True

    async def block(self, item: Pending) -> bool:
        """Block one queued key in LiteLLM; the queue row goes only when LiteLLM agreed."""
        db = self._store()
        key = derive_key(self._secret, item.workspace_id, item.generation)
        try:
            await self._litellm.block(key)
        except LiteLLMError as exc:
            db.revocation_failed(item.workspace_id, item.generation, exc.message)
            self._log.error(
                "cannot revoke the key of workspace=%s generation=%d yet (retried later): %s",
                item.workspace_id,
                item.generation,
                exc.message,
            )
            return False
        db.revocation_done(item.workspace_id, item.generation)
        db.event(
            "key-revoked",
            item.workspace_id,
            "provisioner",
            generation=item.generation,
            reason=item.reason,
        )
        self._log.info(
            "key revoked in LiteLLM: workspace=%s generation=%d reason=%s",
            item.workspace_id,
            item.generation,
            item.reason,
        )
        return True

    async def drain(self, limit: int = 1000) -> Drained:
        """Retry every queued revocation (at most `limit`), oldest and least tried first."""
        done = failed = 0
        async with self._draining:
            for item in self._store().pending(limit):
                if await self.block(item):
                    done += 1
                else:
                    failed += 1
        return Drained(done, failed)

    async def retry_forever(
        self, interval_s: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        """Drain the queue every `interval_s` (RETRY_S when 0), from start on: for a provisioner
        without reconcile passes."""
        while True:
            await sleep(interval_s or RETRY_S)
            try:
                drained = await self.drain()
            except Exception as exc:  # noqa: BLE001 - the loop outlives one bad drain
                self._log.error("retrying queued revocations failed: %s", exc)
                continue
            if drained.done or drained.failed:
                self._log.info(
                    "queued revocations retried: %d done, %d still failing",
                    drained.done,
                    drained.failed,
                )
