"""The provisioner's lifecycle records (issue 18): an older database gains the new columns at
start, a rotation's new generation and the old key's revocation are stored together or not at
all, a revocation is recorded once, and the reconcile order puts the longest unchecked first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from key_provisioner.store import Approval, Store

WS = "3f1b8a2c-5d6e-4f70-8a9b-0c1d2e3f4a5b"


def test_a_database_of_the_previous_release_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE workspace_keys (workspace_id TEXT PRIMARY KEY, generation INTEGER NOT NULL, "
        "level TEXT NOT NULL, owner TEXT NOT NULL, updated_at TEXT NOT NULL);"
        f"INSERT INTO workspace_keys VALUES ('{WS}', 3, 'design-first', 'alice', '2026-12-01T00:00:00+00:00');"
    )
    old.commit()
    old.close()
    store = Store(path)
    stored = store.stored(WS)
    assert stored is not None and (stored.generation, stored.level, stored.revoked_at) == (3, "design-first", None)
    store.close()
    Store(path).close()  # a second start changes nothing


def test_rotated_stores_both_or_neither(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    store.save(WS, 0, "standard", "alice")
    store.rotated(WS, 1, "design-first", "alice", 0, "2026-12-06T11:00:00+00:00")
    stored = store.stored(WS)
    assert stored is not None and (stored.generation, stored.level, stored.rotated_at) == (
        1, "design-first", "2026-12-06T11:00:00+00:00")
    assert [(p.generation, p.reason) for p in store.pending()] == [(0, "rotated")]
    store.save(WS, 1, "design-first", "alice")  # a restart reusing the key keeps the rotation time
    assert store.stored(WS).rotated_at == "2026-12-06T11:00:00+00:00"  # type: ignore[union-attr]
    # A failure inside the transaction leaves the previous state whole.
    store._db.execute("DROP TABLE pending_revocations")
    with pytest.raises(sqlite3.Error):
        store.rotated(WS, 2, "standard", "alice", 1, "2026-12-06T12:00:00+00:00")
    stored = store.stored(WS)
    assert stored is not None and stored.generation == 1


def test_a_generation_made_otherwise_was_not_rotated_in(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    store.rotated(WS, 1, "design-first", "alice", 0, "2026-12-06T11:00:00+00:00")
    store.save(WS, 2, "design-first", "alice")  # e.g. the key expired: the next generation
    assert store.stored(WS).rotated_at is None  # type: ignore[union-attr]


def test_a_revocation_is_recorded_once_and_stops_the_checks(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    other = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    store.save(WS, 2, "standard", "alice")
    store.save(other, 0, "standard", "bob")
    store.checked([other])
    assert [w for w, _ in store.to_check(10)] == [WS, other]  # never checked first
    assert store.mark_revoked(WS, 2, "workspace-deleted") is True
    assert store.mark_revoked(WS, 2, "workspace-deleted") is False
    assert [(p.workspace_id, p.generation) for p in store.pending()] == [(WS, 2)]
    assert [w for w, _ in store.to_check(10)] == [other]
    store.revocation_failed(WS, 2, "LiteLLM down")
    assert store.pending()[0].attempts == 1
    store.revocation_done(WS, 2)
    assert store.pending() == []
    # A workspace the store never knew (its database was lost) is still recorded as revoked.
    unknown = "0a0b0c0d-0e0f-4a1b-8c2d-3e4f5a6b7c8d"
    assert store.mark_revoked(unknown, 0, "admin: cleanup") is True
    assert store.stored(unknown) is not None and store.stored(unknown).revoked_at  # type: ignore[union-attr]


def test_an_approval_replaces_the_previous_one_and_is_removed_when_used(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    store.approve(Approval(WS, "standard", "admin:a (carol)", "t1", "2026-12-06T11:00:00+00:00", "2026-12-13T11:00:00+00:00"))
    store.approve(Approval(WS.upper(), "unrestricted", "cli (dan)", "t2", "2026-12-06T12:00:00+00:00", "2026-12-13T12:00:00+00:00"))
    approval = store.approval(WS)
    assert approval is not None and (approval.level, approval.approved_by) == ("unrestricted", "cli (dan)")
    store.approval_used(WS)
    assert store.approval(WS) is None
