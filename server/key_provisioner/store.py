"""The provisioner's own memory, in SQLite (stdlib): each workspace's key generation and level,
and an event log of what happened (issued, reused, rotated, refused, level-change attempts).

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
"""


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
                "SELECT generation, level FROM workspace_keys WHERE workspace_id = ?",
                (workspace_id.lower(),),
            ).fetchone()
        return Stored(int(row[0]), str(row[1])) if row else None

    def save(self, workspace_id: str, generation: int, level: str, owner: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO workspace_keys (workspace_id, generation, level, owner, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id) DO UPDATE SET "
                "generation = excluded.generation, level = excluded.level, owner = excluded.owner, "
                "updated_at = excluded.updated_at",
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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
