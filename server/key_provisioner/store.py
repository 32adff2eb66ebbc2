"""The provisioner's own memory, in SQLite (stdlib): each workspace's key generation and level,
and an event log of what happened (issued, reused, rotated, refused, level-change attempts).

Key lifecycle (issue 18) adds: when a workspace's key was revoked (its workspace gone) or
rotated, when Coder was last asked about it, the revocations still to be done in LiteLLM (a
queue, so that a crash between "new key stored" and "old key blocked" leaves a retry, never a
live old key), admins' approvals of a less strict level, and when the reconcile loop revoked
(its limit across passes: kept here, not in memory, so that a restart does not reset it; a
table of its own, not the events, which anyone holding PROVISIONER_SECRET can flood into pruning).

Never a key, a token or a secret: keys are derived, so the generation is all that is kept.
The file is created 0600; the schema is created idempotently, so a second start is harmless.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from key_provisioner.keys import Stored

MAX_EVENTS = 100_000  # older events are pruned beyond this many
KEEP_RECONCILE_S = 31 * 86400.0  # reconcile revocations older than the longest window are pruned
_PRUNE_EVERY = 500

SCHEMA = """
CREATE TABLE IF NOT EXISTS workspace_keys (
    workspace_id TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    level TEXT NOT NULL,
    owner TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, id);
CREATE INDEX IF NOT EXISTS events_workspace ON events (workspace_id, id);
CREATE TABLE IF NOT EXISTS pending_revocations (
    workspace_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (workspace_id, generation)
);
CREATE TABLE IF NOT EXISTS reconcile_revocations (
    workspace_id TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reconcile_revocations_at ON reconcile_revocations (at);
CREATE TABLE IF NOT EXISTS level_approvals (
    workspace_id TEXT PRIMARY KEY,
    level TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    approved_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
"""
# Columns added to workspace_keys after the first release (added at start when missing).
_ADDED_COLUMNS = {
    "revoked_at": "TEXT",
    "revoked_reason": "TEXT",
    "rotated_at": "TEXT",
    "checked_at": "TEXT",
}


@dataclass(frozen=True)
class Pending:
    """A key that must be blocked in LiteLLM (a rotated-out or a gone workspace's key)."""

    workspace_id: str
    generation: int
    reason: str
    attempts: int


@dataclass(frozen=True)
class Approval:
    """An admin's consent to a less strict level for one workspace, used once."""

    workspace_id: str
    level: str
    approved_by: str
    reason: str
    approved_at: str
    expires_at: str


@dataclass(frozen=True)
class Event:
    id: int
    at: str
    kind: str
    workspace_id: str
    identity: str
    detail: dict[str, Any]


class StoreError(Exception):
    pass


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(workspace_keys)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE workspace_keys ADD COLUMN {column} {kind}")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the provisioner database {path}: {exc}") from None
        self._lock = threading.Lock()
        self._inserts = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def stored(self, workspace_id: str) -> Stored | None:
        with self._lock:
            row = self._db.execute(
                "SELECT generation, level, revoked_at, rotated_at FROM workspace_keys "
                "WHERE workspace_id = ?",
                (workspace_id.lower(),),
            ).fetchone()
        return Stored(int(row[0]), str(row[1]), row[2], row[3]) if row else None

    def rotated(
        self,
        workspace_id: str,
        generation: int,
        level: str,
        owner: str,
        old_generation: int,
        at: str,
    ) -> None:
        """Store the new generation and queue the old key's revocation in one transaction (the
        crash-safe step of a rotation: either both are recorded or neither)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO workspace_keys (workspace_id, generation, level, owner, updated_at, "
                    "rotated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id) DO UPDATE SET "
                    "generation = excluded.generation, level = excluded.level, owner = excluded.owner, "
                    "updated_at = excluded.updated_at, rotated_at = excluded.rotated_at",
                    (workspace_id.lower(), generation, level, owner, at, at),
                )
                self._queue(workspace_id, old_generation, "rotated", at)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def mark_revoked(
        self, workspace_id: str, generation: int, reason: str, counted_at: float | None = None
    ) -> bool:
        """Record that the workspace gets no more keys and queue its key's revocation; False when
        it was already revoked (nothing changes then). `counted_at` (epoch seconds): a reconcile
        revocation, counted against the loop's window limit in the same transaction."""
        at = _now()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO workspace_keys (workspace_id, generation, level, owner, updated_at) "
                    "VALUES (?, ?, 'standard', '', ?) ON CONFLICT (workspace_id) DO NOTHING",
                    (workspace_id.lower(), generation, at),
                )
                changed = self._db.execute(
                    "UPDATE workspace_keys SET revoked_at = ?, revoked_reason = ?, updated_at = ? "
                    "WHERE workspace_id = ? AND revoked_at IS NULL",
                    (at, reason, at, workspace_id.lower()),
                ).rowcount
                if changed:
                    self._queue(workspace_id, generation, reason, at)
                if changed and counted_at is not None:
                    self._db.execute(
                        "INSERT INTO reconcile_revocations (workspace_id, at) VALUES (?, ?)",
                        (workspace_id.lower(), counted_at),
                    )
                    self._db.execute(
                        "DELETE FROM reconcile_revocations WHERE at < ?",
                        (counted_at - KEEP_RECONCILE_S,),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return bool(changed)

    def reconcile_revoked_since(self, since: float) -> int:
        """How many workspaces the reconcile loop revoked after `since` (epoch seconds)."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM reconcile_revocations WHERE at > ?", (since,)
            ).fetchone()
        return int(row[0])

    def _queue(self, workspace_id: str, generation: int, reason: str, at: str) -> None:
        self._db.execute(
            "INSERT INTO pending_revocations (workspace_id, generation, reason, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (workspace_id, generation) DO NOTHING",
            (workspace_id.lower(), generation, reason, at),
        )

    def pending(self, limit: int = 1000) -> list[Pending]:
        with self._lock:
            rows = self._db.execute(
                "SELECT workspace_id, generation, reason, attempts FROM pending_revocations "
                "ORDER BY attempts, created_at LIMIT ?",
                (limit,),
            ).fetchall()
        return [Pending(r[0], int(r[1]), r[2], int(r[3])) for r in rows]

    def revocation_done(self, workspace_id: str, generation: int) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM pending_revocations WHERE workspace_id = ? AND generation = ?",
                (workspace_id.lower(), generation),
            )

    def revocation_failed(self, workspace_id: str, generation: int, problem: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE pending_revocations SET attempts = attempts + 1, last_error = ? "
                "WHERE workspace_id = ? AND generation = ?",
                (problem[:300], workspace_id.lower(), generation),
            )

    def to_check(self, limit: int) -> list[tuple[str, int]]:
        """Live workspaces, the longest unchecked first: (workspace id, generation)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT workspace_id, generation FROM workspace_keys WHERE revoked_at IS NULL "
                "ORDER BY checked_at IS NOT NULL, checked_at LIMIT ?",
                (limit,),
            ).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    def checked(self, workspace_ids: list[str]) -> None:
        at = _now()
        with self._lock:
            self._db.executemany(
                "UPDATE workspace_keys SET checked_at = ? WHERE workspace_id = ?",
                [(at, w.lower()) for w in workspace_ids],
            )

    def approve(self, approval: Approval) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO level_approvals (workspace_id, level, approved_by, reason, approved_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id) DO UPDATE SET "
                "level = excluded.level, approved_by = excluded.approved_by, reason = excluded.reason, "
                "approved_at = excluded.approved_at, expires_at = excluded.expires_at",
                (
                    approval.workspace_id.lower(),
                    approval.level,
                    approval.approved_by,
                    approval.reason,
                    approval.approved_at,
                    approval.expires_at,
                ),
            )

    def approval(self, workspace_id: str) -> Approval | None:
        with self._lock:
            row = self._db.execute(
                "SELECT workspace_id, level, approved_by, reason, approved_at, expires_at "
                "FROM level_approvals WHERE workspace_id = ?",
                (workspace_id.lower(),),
            ).fetchone()
        return Approval(*row) if row else None

    def approval_used(self, workspace_id: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM level_approvals WHERE workspace_id = ?", (workspace_id.lower(),)
            )

    def save(self, workspace_id: str, generation: int, level: str, owner: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO workspace_keys (workspace_id, generation, level, owner, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id) DO UPDATE SET "
                "generation = excluded.generation, level = excluded.level, owner = excluded.owner, "
                "updated_at = excluded.updated_at, rotated_at = CASE WHEN "
                "workspace_keys.generation = excluded.generation THEN workspace_keys.rotated_at END",
                (workspace_id.lower(), generation, level, owner, _now()),
            )

    def event(self, kind: str, workspace_id: str, identity: str, **detail: Any) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO events (at, kind, workspace_id, identity, detail) VALUES (?, ?, ?, ?, ?)",
                (_now(), kind, workspace_id[:200], identity, json.dumps(detail, sort_keys=True)),
            )
            self._inserts += 1
            if self._inserts % _PRUNE_EVERY == 0:
                self._db.execute(
                    "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (MAX_EVENTS,)
                )

    def events(
        self, kind: str | None = None, workspace_id: str | None = None, limit: int = 100
    ) -> list[Event]:
        """Newest first."""
        query = "SELECT id, at, kind, workspace_id, identity, detail FROM events WHERE 1=1"
        args: list[str | int] = []
        if kind:
            query += " AND kind = ?"
            args.append(kind)
        if workspace_id:
            query += " AND workspace_id = ?"
            args.append(workspace_id)
        query += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]


def now_text() -> str:
    """The store's timestamps: UTC, ISO 8601, to the second."""
    return _now()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
