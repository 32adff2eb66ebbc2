"""Schema creation is idempotent on both databases; SQLite runs in WAL mode; a newer schema is
refused with a sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from workspace_agent_server.db import (
    COMPATIBLE_SINCE,
    SCHEMA_VERSION,
    DbError,
    make_engine,
    meta,
    migrate,
)


def meta_values(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.key: r.value for r in conn.execute(sa.select(meta))}


def test_migrate_twice_is_harmless(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert migrate(engine) == SCHEMA_VERSION
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO workspaces (id, name, owner, agent_version, enrolled_at,"
                    " state, notes, rules_total, rules_failing, rules_corrected,"
                    " stale_notified) VALUES ('w', '', '', '', '2026-01-01', 'unknown',"
                    " '[]', 0, 0, 0, false)"
                )
            )
        assert migrate(engine) == SCHEMA_VERSION
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM workspaces")).scalar_one() == 1
            tables = set(sa.inspect(conn).get_table_names())
        assert meta_values(engine) == {
            "schema_version": str(COMPATIBLE_SINCE),
            "schema_expanded": str(SCHEMA_VERSION),
        }
        assert {
            "workspaces",
            "rule_states",
            "transitions",
            "reports",
            "drift_meta",
            "webhook_outbox",
            "drift_replicas",
        } <= tables
    finally:
        engine.dispose()


def test_newer_schema_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(
                meta.update()
                .where(meta.c.key == "schema_version")
                .values(value=str(SCHEMA_VERSION + 1))
            )
        with pytest.raises(DbError, match="more than this server understands"):
            migrate(engine)
    finally:
        engine.dispose()


def test_a_newer_release_that_only_expanded_is_fine(db_url: str) -> None:
    """A later release added tables or columns (schema_expanded went up) but still lets this
    schema run (schema_version): this release starts, and lowers neither number (rollback)."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(
                meta.update()
                .where(meta.c.key == "schema_expanded")
                .values(value=str(SCHEMA_VERSION + 1))
            )
        assert migrate(engine) == SCHEMA_VERSION
        assert meta_values(engine) == {
            "schema_version": str(COMPATIBLE_SINCE),
            "schema_expanded": str(SCHEMA_VERSION + 1),
        }
    finally:
        engine.dispose()


def test_contract_step_waits_for_older_replicas(db_url: str) -> None:
    """Raising schema_version (here from 2 to COMPATIBLE_SINCE) would stop older releases: not
    while a replica of one has a recent heartbeat; once it stopped (or went silent), it goes on."""
    from datetime import UTC, datetime, timedelta

    from workspace_agent_server.db import REPLICA_ALIVE_S, replicas

    engine = make_engine(db_url)
    now = datetime.now(UTC)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(meta.update().where(meta.c.key == "schema_version").values(value="2"))
            conn.execute(
                replicas.insert().values(
                    id="old-host:1:abc", schema_version=2, server_version="0.0.9",
                    started_at=now, heartbeat_at=now, counters="{}",
                )
            )
        with pytest.raises(DbError, match=r"1 replica\(s\) of an older release .*old-host:1:abc"):
            migrate(engine)
        assert meta_values(engine)["schema_version"] == "2"  # nothing changed
        with engine.begin() as conn:
            conn.execute(
                replicas.update().values(
                    heartbeat_at=now - timedelta(seconds=REPLICA_ALIVE_S + 1)
                )
            )
        assert migrate(engine) == SCHEMA_VERSION
        assert meta_values(engine)["schema_version"] == str(COMPATIBLE_SINCE)
    finally:
        engine.dispose()


def test_sqlite_uses_wal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        migrate(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert (tmp_path / "d.db-wal").exists()
    finally:
        engine.dispose()


def test_sqlite_write_transactions_that_read_first_take_turns(tmp_path: Path) -> None:
    """Two transactions that read, pause, then write: both commit, one after the other (BEGIN
    IMMEDIATE makes the second wait for the write lock instead of failing with "database is
    locked"). PostgreSQL needs no such thing: ingest locks the workspace's row."""
    import threading
    import time

    from workspace_agent_server.db import write_tx

    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    errors: list[BaseException] = []
    try:
        migrate(engine)

        def bump() -> None:
            try:
                with write_tx(engine) as conn:
                    n = int(
                        conn.execute(sa.select(meta.c.value).where(meta.c.key == "n")).scalar() or 0
                    )
                    time.sleep(0.2)
                    conn.execute(meta.delete().where(meta.c.key == "n"))
                    conn.execute(meta.insert().values(key="n", value=str(n + 1)))
            except BaseException as exc:  # noqa: BLE001 (collected and asserted below)
                errors.append(exc)

        threads = [threading.Thread(target=bump) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with engine.connect() as conn:
            assert conn.execute(sa.select(meta.c.value).where(meta.c.key == "n")).scalar() == "2"
    finally:
        engine.dispose()


@pytest.mark.parametrize("old_version", [1, 2])
def test_older_database_gets_the_rules_digest_and_status_index(
    db_url: str, old_version: int
) -> None:
    """A database made by an earlier release (1: the first; 2: with the identity columns) is
    upgraded in place to the current schema and keeps its rows; the next report stores a
    digest."""
    from datetime import UTC, datetime

    from workspace_agent_server import queries
    from workspace_agent_server.db import write_tx

    from tests.server.conftest import make_report, rule
    from workspace_agent import wire
    from workspace_agent.wire import WorkspaceIdentity

    engine = make_engine(db_url)
    try:
        migrate(engine)
        now = datetime.now(UTC)
        with write_tx(engine) as conn:
            queries.enroll(conn, WorkspaceIdentity(id="w"), "0.1.0", "h" * 64, now)
            conn.exec_driver_sql("DROP INDEX ix_workspaces_status")
            conn.exec_driver_sql("ALTER TABLE workspaces DROP COLUMN rules_digest")
            if old_version < 2:
                conn.exec_driver_sql("ALTER TABLE workspaces DROP COLUMN identity_mode")
                conn.exec_driver_sql("ALTER TABLE workspaces DROP COLUMN template_name")
            conn.execute(meta.update().values(value=str(old_version)))
        assert migrate(engine) == SCHEMA_VERSION == 5
        assert migrate(engine) == 5  # and again: nothing to do
        assert meta_values(engine) == {"schema_version": "3", "schema_expanded": "5"}
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("workspaces")}
            assert {"rules_digest", "identity_mode", "template_name"} <= columns
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("workspaces")}
            assert "ix_workspaces_status" in indexes
            assert conn.execute(sa.text("SELECT id FROM workspaces")).scalars().all() == ["w"]
        rep = wire.Report.model_validate(make_report("w", [rule("a")], at=now))
        with write_tx(engine) as conn:
            assert queries.ingest(conn, "w", rep, now, "h" * 64).applied
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT rules_digest FROM workspaces")).scalar()
    finally:
        engine.dispose()


@pytest.mark.parametrize("mode, level", [("normal", 1), ("full", 2)])
def test_sqlite_synchronous_setting(tmp_path: Path, mode: str, level: int) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}", sqlite_synchronous=mode)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level
    finally:
        engine.dispose()
    with pytest.raises(DbError, match="normal or full"):
        make_engine(f"sqlite:///{tmp_path / 'e.db'}", sqlite_synchronous="sometimes")
