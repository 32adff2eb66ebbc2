"""Schema creation is idempotent on both databases; SQLite runs in WAL mode; a newer schema is
refused with a sentence."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from workspace_agent_server.db import SCHEMA_VERSION, DbError, make_engine, meta, migrate


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
            versions = conn.execute(sa.select(meta.c.value)).scalars().all()
            assert versions == [str(SCHEMA_VERSION)]
            tables = set(sa.inspect(conn).get_table_names())
        assert {"workspaces", "rule_states", "transitions", "reports", "drift_meta"} <= tables
    finally:
        engine.dispose()


def test_newer_schema_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(meta.update().values(value=str(SCHEMA_VERSION + 1)))
        with pytest.raises(DbError, match="newer than this server"):
            migrate(engine)
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
