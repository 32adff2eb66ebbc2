"""`workspace-agent-server`: check the settings, open (and migrate) the database, run uvicorn.

Secrets come from the environment (`DRIFT_ENROLLMENT_SECRET`, `DRIFT_ADMIN_TOKENS`,
`DRIFT_WEBHOOK_SECRET`) or from files (`--*-file`), never from flags that `ps` would show.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import __version__
from .db import DbError
from .settings import Settings, to_environment


class StartError(Exception):
    """The server cannot start; the message says why."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="workspace-agent-server",
        description="Drift server for workspace-agent: collects drift reports, shows the fleet.",
        epilog="Secrets: DRIFT_ENROLLMENT_SECRET, DRIFT_ADMIN_TOKENS (comma-separated), "
        "DRIFT_WEBHOOK_SECRET, or the --*-file options. Every setting also reads "
        "DRIFT_<NAME> (see server/README.md).",
    )
    p.add_argument(
        "--db",
        dest="db_url",
        help="database URL (default sqlite:///./drift.db; "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (default 1; see the README's Performance section)",
    )
    p.add_argument(
        "--heartbeat-interval",
        dest="heartbeat_interval_s",
        type=int,
        help="seconds between agent heartbeats (default 300)",
    )
    p.add_argument(
        "--stale-after",
        dest="stale_after_heartbeats",
        type=int,
        help="missed heartbeats before a workspace is stale (default 3)",
    )
    p.add_argument(
        "--max-body-bytes",
        dest="max_body_bytes",
        type=int,
        help="largest report accepted (default 524288)",
    )
    p.add_argument(
        "--webhook-url",
        dest="webhook_url",
        help="POST notices of newly drifted or stale workspaces here (needs DRIFT_WEBHOOK_SECRET)",
    )
    p.add_argument("--enrollment-secret-file", type=Path, help="read the enrollment secret here")
    p.add_argument("--admin-tokens-file", type=Path, help="read admin tokens here, one a line")
    p.add_argument("--webhook-secret-file", type=Path, help="read the webhook secret here")
    p.add_argument(
        "--litellm-master-key-file", type=Path, help="read LiteLLM's master key here (spend pulls)"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StartError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None


def settings_from_args(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    """Flags over environment over defaults; raises StartError with a sentence."""
    args = _parser().parse_args(argv)
    values: dict[str, Any] = {
        k: v for k, v in vars(args).items() if v is not None and k in Settings.model_fields
    }
    if args.enrollment_secret_file:
        values["enrollment_secret"] = _read_secret(args.enrollment_secret_file, "enrollment secret")
    if args.admin_tokens_file:
        values["admin_tokens"] = ",".join(
            line.strip()
            for line in _read_secret(args.admin_tokens_file, "admin tokens").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        )
    if args.webhook_secret_file:
        values["webhook_secret"] = _read_secret(args.webhook_secret_file, "webhook secret")
    if args.litellm_master_key_file:
        values["litellm_master_key"] = _read_secret(
            args.litellm_master_key_file, "LiteLLM master key"
        )
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors(include_input=False))
        raise StartError(f"bad settings: {problems}") from None
    return settings, args


def _problem(error: Any) -> str:
    """One pydantic error as `DRIFT_NAME: message` (the model-level checks name it themselves)."""
    message = str(error["msg"]).removeprefix("Value error, ")
    loc = error.get("loc") or ()
    return f"DRIFT_{str(loc[0]).upper()}: {message}" if loc else message


def uvicorn_options(settings: Settings, host: str, port: int, log_level: str) -> dict[str, Any]:
    """How uvicorn serves: slow clients cut off (header-read timeout, keep-alive timeout; the
    body's timeout is BodyLimit's), JSON log lines, forwarded headers only from trusted proxies."""
    from http_guard.header_timeout import ENV, HeaderTimeoutProtocol
    from http_guard.json_log import uvicorn_log_config

    os.environ[ENV] = str(settings.header_timeout_s)  # read by the protocol, in every worker
    trusted = settings.forwarded_allow_ips
    return {
        "host": host,
        "port": port,
        "log_level": log_level,
        "log_config": uvicorn_log_config(log_level),
        "http": HeaderTimeoutProtocol,
        "timeout_keep_alive": settings.keep_alive_s,
        "h11_max_incomplete_event_size": 16 * 1024,  # headers larger than this: 400 (h11 only)
        "proxy_headers": trusted is not None,
        "forwarded_allow_ips": trusted or "127.0.0.1",
        "server_header": False,
    }


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from .app import create_app

    try:
        settings, args = settings_from_args(argv)
    except StartError as exc:
        print(f"workspace-agent-server: {exc}", file=sys.stderr)
        return 1
    if settings.enrollment_secret is None:
        print(
            "workspace-agent-server: DRIFT_ENROLLMENT_SECRET is not set: workspaces cannot "
            "enroll until it is",
            file=sys.stderr,
        )
    if not settings.admin_tokens:
        print(
            "workspace-agent-server: DRIFT_ADMIN_TOKENS is not set: the admin page and API "
            "stay closed until it is",
            file=sys.stderr,
        )
    if args.workers < 1:
        print("workspace-agent-server: --workers must be 1 or more", file=sys.stderr)
        return 1
    try:
        app = create_app(settings)  # here too with workers: a bad database stops the start now
    except DbError as exc:
        print(f"workspace-agent-server: {exc}", file=sys.stderr)
        return 1
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    options = uvicorn_options(settings, args.host, args.port, args.log_level)
    if args.workers == 1:
        uvicorn.run(app, **options)
        return 0
    app.state.ctx.engine.dispose()
    # Each worker process builds its own app from the environment (secrets read from files
    # included: the environment of one's own processes is readable by the same user only).
    os.environ.update(to_environment(settings))
    uvicorn.run(
        "workspace_agent_server.app:app_from_environment",
        factory=True,
        workers=args.workers,
        **options,
    )
    return 0
