"""No free database connection: answer 503 with Retry-After, not 500.

Two ways to run out: this process's pool stays full for `DRIFT_DB_POOL_TIMEOUT_S` (SQLAlchemy's
pool TimeoutError), or the database refuses a new connection because all of its
`max_connections` are taken (PostgreSQL SQLSTATE 53300, "too many clients"). Both pass when load
drops, so a client (the agent keeps its report queued) should try again later.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("workspace_agent_server")
RETRY_AFTER_S = 5
TOO_MANY_CONNECTIONS = "53300"


def out_of_connections(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, OperationalError):
        orig = exc.orig
        if getattr(orig, "sqlstate", None) == TOO_MANY_CONNECTIONS:
            return True
        # A refused connection carries no SQLSTATE in psycopg: its message says it (the server's
        # max_connections, a role's or a database's CONNECTION LIMIT, the reserved slots).
        text = str(orig).lower()
        return any(
            sign in text
            for sign in (
                "too many clients",
                "too many connections",
                "remaining connection slots are reserved",
            )
        )
    return False


def busy_response() -> JSONResponse:
    return JSONResponse(
        {
            "detail": "the server has no free database connection right now: try again in a few "
            "seconds",
            "reason": "busy",
        },
        503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    log.warning("503 for %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return busy_response()


async def _operational(request: Request, exc: Exception) -> JSONResponse:
    if out_of_connections(exc):
        log.warning("503 for %s %s: the database has no free connection", request.method,
                    request.url.path)
        return busy_response()
    raise exc


def install(app: FastAPI) -> None:
    app.add_exception_handler(PoolTimeout, _pool_timeout)
    app.add_exception_handler(OperationalError, _operational)
