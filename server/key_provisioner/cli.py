"""`workspace-key-provisioner`: run the provisioner, or read what it recorded.

    workspace-key-provisioner serve [--host 0.0.0.0] [--port 8100]
    workspace-key-provisioner events [--kind level-mismatch] [--workspace ID] [--limit 50] [--json]
    workspace-key-provisioner approve-level --workspace ID --level standard --by NAME [--reason R]

Settings (and every secret) come from the environment only, never from flags that `ps` shows:
PROVISIONER_SECRET, LITELLM_URL, LITELLM_MASTER_KEY, KEY_PROVISIONER_DERIVATION_SECRET,
CODER_URL, CODER_API_TOKEN, KEY_PROVISIONER_IDENTITY, KEY_PROVISIONER_DB,
KEY_PROVISIONER_RATE_LIMIT, KEY_PROVISIONER_CODER_LOOKUP_LIMIT, KEY_PROVISIONER_HEADER_TIMEOUT_S,
KEY_PROVISIONER_BODY_TIMEOUT_S, KEY_PROVISIONER_FORWARDED_ALLOW_IPS, WORKSPACE_BUDGET
(docs/identity.md). Logs are JSON lines on stderr. Exit codes: 0 fine, 1 a setting
or the database is wrong (one sentence on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from key_provisioner import __version__
from key_provisioner.settings import SettingsError, approval_ttl, from_env
from key_provisioner.store import Store, StoreError

EVENT_KINDS = (
    "key-issued",
    "key-reused",
    "key-rotated",
    "key-blocked",
    "level-mismatch",
    "identity-refused",
    "identity-missing",
    "identity-unavailable",
    "legacy-request",
    "rate-limited",
    "litellm-failed",
    "workspace-revoked",
    "key-revoked",
    "revoked-refused",
    "revoke-hook-refused",
    "reconcile-braked",
    "level-approved",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workspace-key-provisioner",
        description="Hands each Coder workspace its LiteLLM key, after Coder confirms who is asking.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API (the platform's port is 8100)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=8100, help="port (default 8100)")
    events = commands.add_parser("events", help="what the provisioner recorded, newest first")
    events.add_argument("--kind", choices=EVENT_KINDS, help="only this kind (e.g. level-mismatch)")
    events.add_argument("--workspace", help="only this workspace id")
    events.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    approve = commands.add_parser(
        "approve-level",
        help="let one workspace's next key request lower its level (rotates its key; used once)",
    )
    approve.add_argument("--workspace", required=True, help="the Coder workspace id")
    approve.add_argument(
        "--level", required=True, choices=("unrestricted", "standard", "design-first")
    )
    approve.add_argument("--by", required=True, help="who approves (recorded in the events)")
    approve.add_argument("--reason", default="", help="why (recorded in the events)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "events":
            return _events(args)
        if args.command == "approve-level":
            return _approve(args)
        return _serve(args)
    except (SettingsError, StoreError) as exc:
        print(f"workspace-key-provisioner: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    settings = from_env()
    Store(settings.db_path).close()  # a database problem is a sentence now, not a traceback later
    import uvicorn
    from http_guard.header_timeout import ENV, HeaderTimeoutProtocol
    from http_guard.json_log import JsonLines, uvicorn_log_config

    from key_provisioner.app import create_app

    # One JSON object per line: a user name with a newline cannot forge a line (issue 15).
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    os.environ[ENV] = str(settings.header_timeout_s)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="info",
        log_config=uvicorn_log_config("info"),
        http=HeaderTimeoutProtocol,
        timeout_keep_alive=5,
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips or "127.0.0.1",
        server_header=False,
    )
    return 0


def _existing_store() -> Store:
    path = Path(os.environ.get("KEY_PROVISIONER_DB", "").strip() or "key-provisioner.db")
    if not path.exists():
        raise StoreError(
            f"no provisioner database at {path}: set KEY_PROVISIONER_DB to the server's"
        )
    return Store(path)


def _approve(args: argparse.Namespace) -> int:
    """An admin on the provisioner's host: the same record as the admin API, audited as `cli`."""
    from key_provisioner.admin import record_approval
    from key_provisioner.logs import logger

    by = args.by.strip()
    if not by:
        print("workspace-key-provisioner: --by must name who approves", file=sys.stderr)
        return 2
    ttl = approval_ttl()  # checked as the server checks it, before the database is opened
    store = _existing_store()
    try:
        approval = record_approval(
            store,
            args.workspace.strip(),
            args.level,
            f"cli ({by})",
            args.reason.strip(),
            ttl,
            logger(()),
        )
    finally:
        store.close()
    print(
        f"approved: workspace {approval.workspace_id} may lower its key to {approval.level} at its "
        f"next start (until {approval.expires_at}); the key is then rotated"
    )
    return 0


def _printable(text: str) -> str:
    """Events carry what workspaces sent (a username, a workspace id): shown in an admin's
    terminal, a control character is written as its escape (\\x1b), never sent as it is."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _events(args: argparse.Namespace) -> int:
    store = _existing_store()
    try:
        rows = store.events(args.kind, args.workspace, max(1, args.limit))
    finally:
        store.close()
    for event in rows:
        if args.json:
            print(
                json.dumps(
                    {
                        "at": event.at,
                        "kind": event.kind,
                        "workspace_id": event.workspace_id,
                        "identity": event.identity,
                        **event.detail,
                    },
                    sort_keys=True,
                )
            )
        else:
            detail = " ".join(f"{k}={v}" for k, v in sorted(event.detail.items()))
            line = f"{event.at}  {event.kind:<20} {event.workspace_id}  {event.identity}  {detail}"
            print(_printable(line.rstrip()))
    if not rows and not args.json:
        print("no events recorded" + (f" of kind {args.kind}" if args.kind else ""))
    return 0
