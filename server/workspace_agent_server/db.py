"""The schema (SQLAlchemy Core) and the engine: SQLite file by default, PostgreSQL by URL.

`migrate()` is idempotent and safe when two servers start at once (PostgreSQL: an advisory lock;
SQLite: one writer at a time). SQLite runs in WAL mode so the admin page can read while reports
are written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.types import TypeDecorator

SCHEMA_VERSION = 5  # 2: identity_mode, template_name; 3: rules_digest, ix_workspaces_status
# 4: webhook_outbox, drift_replicas (expand only: releases of schema 3 run on it unchanged)
# 5: spend_keys, spend_daily, spend_pull, spend_alerts (expand only, new tables)
# The oldest release schema that can still run on a database this release made or expanded. Every
# release refuses to start on a `schema_version` above its own, so this release writes this value
# there (not SCHEMA_VERSION) and keeps its own level in `schema_expanded`: a replica of the
# previous release keeps working during a rolling upgrade and can be started again to roll back.
# A release that drops or redefines something older releases use (a contract step) raises it,
# and refuses to while a replica older than that is alive (replicas.py).
COMPATIBLE_SINCE = 3
_PG_MIGRATE_LOCK = 7_315_024_001  # arbitrary constant for pg_advisory_xact_lock


class DbError(Exception):
    """The database cannot be used; the message says why and what to do."""


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC without a zone (same on SQLite and PostgreSQL); reads back aware UTC."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


_BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

metadata = MetaData()

meta = Table(
    "drift_meta",
    metadata,
    Column("key", String(50), primary_key=True),
    Column("value", String(200), nullable=False),
)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("owner", String(200), nullable=False, default=""),
    Column("agent_version", String(50), nullable=False, default=""),
    Column("token_hash", String(64), nullable=True, unique=True),
    Column("token_issued_at", UTCDateTime, nullable=True),
    Column("token_revoked_at", UTCDateTime, nullable=True),
    Column("enrolled_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=True),  # server clock: drives "stale"
    Column("last_report_at", UTCDateTime, nullable=True),  # the report's finished_at
    Column("last_report_id", String(64), nullable=True),
    Column("last_kind", String(20), nullable=True),
    Column("state", String(20), nullable=False, default="unknown"),
    Column("state_since", UTCDateTime, nullable=True),
    Column("enforcement_level", String(50), nullable=True),
    Column("key_enforcement_level", String(50), nullable=True),
    Column("key_source", String(30), nullable=True),
    Column("desired_sha256", String(64), nullable=True),
    Column("prompt_sha256", String(64), nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("rules_total", Integer, nullable=False, default=0),
    Column("rules_failing", Integer, nullable=False, default=0),
    Column("rules_corrected", Integer, nullable=False, default=0),
    Column("notes", Text, nullable=False, default="[]"),  # JSON list of strings
    # ingest.rules_digest of the stored rule rows: an unchanged heartbeat skips reading them.
    Column("rules_digest", String(64), nullable=True),
    Column("stale_notified", Boolean, nullable=False, default=False),
    # How the workspace proved itself at enrollment: coder-agent-token (Coder vouched) or
    # enrollment-secret (the shared secret only; NULL in rows from before schema 2).
    Column("identity_mode", String(30), nullable=True),
    Column("template_name", String(200), nullable=True),  # from Coder, when verified
    Index("ix_workspaces_state", "state"),
    Index("ix_workspaces_owner", "owner"),
    Index("ix_workspaces_last_seen", "last_seen_at"),
    # Covers what the status (stale overrides the state) and the fleet's order need: counts and
    # the fleet list read this index instead of the table's wide rows.
    Index("ix_workspaces_status", "state", "last_seen_at", "enrolled_at", "name", "id"),
)

rule_states = Table(
    "rule_states",
    metadata,
    Column(
        "workspace_id",
        String(200),
        ForeignKey("workspaces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("rule_id", String(200), primary_key=True),
    Column("target", String(1000), nullable=False),
    Column("state", String(20), nullable=False),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("message", Text, nullable=True),
    Column("state_since", UTCDateTime, nullable=False),
    Column("failing_since", UTCDateTime, nullable=True),  # start of the latest failing episode
    Column("recovered_at", UTCDateTime, nullable=True),  # end of it (None while failing)
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column(
        "workspace_id", String(200), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("rule_id", String(200), nullable=True),  # None: the workspace's overall state
    Column("from_state", String(20), nullable=True),  # None: first seen
    Column("to_state", String(20), nullable=False),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("message", Text, nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Column("report_id", String(64), nullable=False),
    Index("ix_transitions_ws", "workspace_id", "id"),
)

reports = Table(
    "reports",
    metadata,
    Column(
        "workspace_id",
        String(200),
        ForeignKey("workspaces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("report_id", String(64), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    Column("exit_code", Integer, nullable=False),
    Index("ix_reports_received", "received_at"),
)

# `workspace-agent watch`: locked values put back between runs (corrections.py). A new table needs
# no schema version step: migrate()'s create_all adds it to an existing database.
corrections = Table(
    "corrections",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column(
        "workspace_id", String(200), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("correction_id", String(64), nullable=False),
    Column("rule_id", String(200), nullable=False),
    Column("target", String(1000), nullable=False),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("at", UTCDateTime, nullable=False),  # the agent's clock: when it was put back
    Column("restored", Boolean, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("message", Text, nullable=True),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "correction_id", name="uq_corrections_ws_id"),
    Index("ix_corrections_ws", "workspace_id", "id"),
    Index("ix_corrections_received", "received_at"),
)


# Admin sign-ins (issue 15): server-side, so that signing out or removing the admin token ends a
# session at once. Only a hash of the cookie is kept. New tables need no schema step: migrate()'s
# create_all adds a missing table to an older database.
admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # sha256 of the cookie value
    Column("admin_token_id", String(16), nullable=False),  # which admin token signed in
    Column("csrf", String(64), nullable=False),  # the token every state-changing form sends
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_admin_sessions_expires", "expires_at"),
)


# Webhook notices, written in the transaction that changes the state they tell of (the outbox
# pattern) and deleted once a receiver took them: whichever replica is alive sends them (outbox.py).
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("notice_id", String(32), nullable=False, unique=True),  # the event's id for receivers
    Column("kind", String(20), nullable=False),
    Column("workspace_id", String(200), nullable=False),
    Column("payload", Text, nullable=False),  # the event as JSON
    Column("created_at", UTCDateTime, nullable=False),
    # Not to be sent before: the end of a sender's lease, or of the backoff after a failure.
    Column("available_at", UTCDateTime, nullable=False),
    Column("claimed_by", String(100), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("failed_at", UTCDateTime, nullable=True),  # gave up (kept for the retention days)
    Column("last_error", String(300), nullable=True),
    Index("ix_outbox_due", "failed_at", "available_at", "id"),
)

# One row per server process, refreshed by its heartbeat: which schema each running replica
# speaks (a contract migration waits for older ones to go) and its counters (so /metrics of any
# process can give every process's, labelled, and they add up).
replicas = Table(
    "drift_replicas",
    metadata,
    Column("id", String(100), primary_key=True),  # host:pid:random
    Column("schema_version", Integer, nullable=False),
    Column("server_version", String(50), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("stopped_at", UTCDateTime, nullable=True),
    Column("counters", Text, nullable=False, default="{}"),  # JSON: Metrics.snapshot()
)


# Spend pulled from LiteLLM (spend_pull.py). LiteLLM is the source of truth; these tables are a
# copy that the pages can group and join with compliance. Keys are LiteLLM's own key hashes (the
# `token` of its LiteLLM_VerificationToken, the `api_key` of its spend logs), so a pull written
# twice (two replicas, a retry) replaces rows instead of adding to them.
spend_keys = Table(
    "spend_keys",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("key_alias", String(200), nullable=True),
    Column("key_name", String(64), nullable=True),  # LiteLLM's masked form, "sk-...abcd"
    Column("workspace_id", String(200), nullable=True),  # metadata.coder_workspace
    Column("workspace_name", String(200), nullable=True),
    Column("owner", String(200), nullable=True),
    Column("template_name", String(200), nullable=True),
    Column("level", String(50), nullable=True),  # metadata.enforcement_level
    Column("generation", Integer, nullable=True),
    Column("spend", Float, nullable=False, default=0.0),  # the current budget window's
    Column("max_budget", Float, nullable=True),
    Column("budget_duration", String(50), nullable=True),
    Column("budget_reset_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("blocked", Boolean, nullable=False, default=False),
    Column("last_spend_at", UTCDateTime, nullable=True),  # newest request in its spend logs
    Column("last_active", UTCDateTime, nullable=True),  # LiteLLM's own "last used"
    Column("seen_at", UTCDateTime, nullable=False),  # the last pull that listed the key
    Index("ix_spend_keys_workspace", "workspace_id"),
    Index("ix_spend_keys_last_spend", "last_spend_at"),
)

# Budget use (most used first) and idleness (longest first) are read in index order, so a page
# of 50 keys out of 50,000 stops after 50 rows (NULLIF: PostgreSQL refuses x / 0 in an index).
BUDGET_USE = spend_keys.c.spend / func.nullif(spend_keys.c.max_budget, 0)
IDLE_SINCE = func.coalesce(spend_keys.c.last_spend_at, spend_keys.c.created_at)
Index("ix_spend_keys_use", BUDGET_USE, spend_keys.c.token)
Index("ix_spend_keys_idle", IDLE_SINCE, spend_keys.c.token)

# Per key, UTC day and model group: what LiteLLM's spend logs of that day add up to. A pull
# recomputes whole days and writes them over (never adds), so re-pulling a day is harmless.
spend_daily = Table(
    "spend_daily",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("model_group", String(200), primary_key=True),
    Column("spend", Float, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("prompt_tokens", _BigId, nullable=False, default=0),
    Column("completion_tokens", _BigId, nullable=False, default=0),
    Column("last_at", UTCDateTime, nullable=True),
    # A period's sums read an index alone, not the table: a few days by their range (day
    # first); a month on SQLite in group order (key first), which needs no sort of 3M rows
    # (benchmarks/spend.py: 5.1 s → 1.2 s for 50,000 keys × 30 days × 2 models).
    Index("ix_spend_daily_day", "day", "token", "model_group", "spend", "requests"),
    Index("ix_spend_daily_key", "token", "model_group", "day", "spend", "requests"),
)

# One row: which replica pulls now (a lease, so replicas take turns and do not pull N times per
# period), how the last pull went, and `generation`, bumped by every pull that wrote, which the
# pages' caches key on.
spend_pull = Table(
    "spend_pull",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("lease_by", String(100), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("started_at", UTCDateTime, nullable=True),
    Column("ok_at", UTCDateTime, nullable=True),
    Column("error", Text, nullable=True),
    Column("error_at", UTCDateTime, nullable=True),
    Column("keys", Integer, nullable=True),
    Column("log_rows", Integer, nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("synced_through", Date, nullable=True),  # days before this one are final
    Column("keys_at", UTCDateTime, nullable=True),  # when the last full key list was stored
    Column("generation", Integer, nullable=False, default=0),
)

# A budget threshold notice, once per key, budget window and threshold: the primary key makes a
# second insert (the next pull, another replica) a no-op, and the notice is only stored with it.
spend_alerts = Table(
    "spend_alerts",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("period", String(40), primary_key=True),  # the window's budget_reset_at, or "total"
    Column("threshold", Integer, primary_key=True),
    Column("sent_at", UTCDateTime, nullable=False),
    Column("spend", Float, nullable=False),
    Column("max_budget", Float, nullable=False),
)


def make_engine(
    url: str,
    sqlite_synchronous: str = "normal",
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout_s: float = 10.0,
) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and real transactions.

    `sqlite_synchronous`: "normal" (WAL's usual setting: a committed report survives a crash or
    kill of the server, but the last commits before a power cut or kernel crash can be lost) or
    "full" (an fsync per commit, i.e. per batch of reports: survives those too; measured ~15-40%
    fewer reports/s here).

    PostgreSQL: each process holds at most `pool_size + max_overflow` connections; a request that
    waited `pool_timeout_s` for one gets sqlalchemy's TimeoutError (answered 503, see busy.py)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DbError(
            f"the database URL {url!r} is not valid: use sqlite:///path/drift.db or "
            "postgresql+psycopg://user@host:5432/db"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        if sqlite_synchronous not in ("normal", "full"):
            raise DbError(f"sqlite_synchronous must be normal or full, not {sqlite_synchronous!r}")
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(
            engine, "connect", lambda conn, _record: _sqlite_connect(conn, sqlite_synchronous)
        )
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout_s,
        )
    raise DbError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql+psycopg://"
    )


def _sqlite_connect(dbapi_connection: Any, synchronous: str) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own handling skips it for
    # SELECTs, which would break read-then-write transactions).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A write transaction takes the write lock at BEGIN: one that read first and wrote later would
    # fail with "database is locked" (not wait) when another writer committed in between.
    write = conn.get_execution_options().get("drift_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes (commits at the end, rolls back on an error). Use it instead of
    `engine.begin()`: on SQLite it waits its turn for the write lock up front."""
    with engine.connect() as conn:
        conn.execution_options(drift_write=True)
        with conn.begin():
            yield conn


def migrate(engine: Engine) -> int:
    """Create or upgrade the schema; safe to run on every start. Returns the schema version.

    Two numbers are kept: `schema_version`, the oldest release schema that may run here (every
    release refuses a higher one), and `schema_expanded`, how far additive steps went. Steps that
    older releases ignore (new tables, nullable columns they never read) only move the second."""
    try:
        with write_tx(engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATE_LOCK})
            had_replicas = inspect(conn).has_table(replicas.name)
            metadata.create_all(conn, checkfirst=True)
            version = _meta_int(conn, "schema_version")
            level = max(version, _meta_int(conn, "schema_expanded"))
            if version > SCHEMA_VERSION:
                raise DbError(
                    f"the database needs schema version {version} or newer, more than this "
                    f"server understands ({SCHEMA_VERSION}): upgrade workspace-agent-server"
                )
            if 0 < version < COMPATIBLE_SINCE and had_replicas:
                _refuse_if_older_alive(conn, COMPATIBLE_SINCE)
            # Schema changes, one step per version (a fresh database got them from create_all).
            if 0 < level < 2:
                _add_column(conn, workspaces.c.identity_mode)
                _add_column(conn, workspaces.c.template_name)
            if 0 < level < 3:
                _add_column(conn, workspaces.c.rules_digest)
                _index("ix_workspaces_status").create(conn, checkfirst=True)
            # 4: webhook_outbox and drift_replicas, 5: the spend tables come from create_all.
            _set_meta(conn, "schema_version", max(version, COMPATIBLE_SINCE))
            _set_meta(conn, "schema_expanded", max(level, SCHEMA_VERSION))
            return SCHEMA_VERSION
    except SQLAlchemyError as exc:
        raise DbError(f"cannot open the database {safe_url(engine)}: {_first_line(exc)}") from exc


REPLICA_ALIVE_S = 60  # a replica whose heartbeat is older than this is taken as gone


def _refuse_if_older_alive(conn: Connection, needed: int) -> None:
    """A contract step breaks releases below `needed`: not while one of them still runs."""
    cutoff = datetime.now(UTC) - timedelta(seconds=REPLICA_ALIVE_S)
    older = conn.execute(
        select(replicas.c.id, replicas.c.schema_version).where(
            replicas.c.schema_version < needed,
            replicas.c.stopped_at.is_(None),
            replicas.c.heartbeat_at > cutoff,
        )
    ).all()
    if older:
        names = ", ".join(f"{r.id} (schema {r.schema_version})" for r in older[:5])
        raise DbError(
            f"{len(older)} replica(s) of an older release still use this database ({names}): "
            "upgrade or stop them first, then start this release again"
        )


def _meta_int(conn: Connection, key: str) -> int:
    found = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()
    return int(found) if found is not None else 0


def _set_meta(conn: Connection, key: str, value: int) -> None:
    if _meta_int(conn, key) == value:
        return
    done = conn.execute(meta.update().where(meta.c.key == key).values(value=str(value)))
    if not done.rowcount:
        conn.execute(meta.insert().values(key=key, value=str(value)))


def _add_column(conn: Connection, column: Column[Any]) -> None:
    """ALTER TABLE … ADD COLUMN, unless an interrupted earlier start already added it."""
    table = column.table.name
    if column.name in {c["name"] for c in inspect(conn).get_columns(table)}:
        return
    kind = column.type.compile(dialect=conn.dialect)
    conn.exec_driver_sql(f'ALTER TABLE {table} ADD COLUMN "{column.name}" {kind}')


def _index(name: str) -> Index:
    return next(i for i in workspaces.indexes if i.name == name)


def safe_url(engine: Engine) -> str:
    """The engine's URL without its password, fit for a message."""
    return engine.url.render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
