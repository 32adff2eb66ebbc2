"""A client that closes its connection before its body arrived is routine (an agent stopped, a
network blip, a load balancer's timeout): one INFO line, no traceback, nothing stored. The agent
keeps its report queued and sends it again."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

log = logging.getLogger("workspace_agent_server")


async def _gone(request: Request, exc: Exception) -> Response:
    client = request.client.host if request.client else "?"
    log.info(
        "%s %s: the client (%s) closed the connection before sending its whole body",
        request.method,
        request.url.path,
        client,
    )
    return Response(status_code=400)  # nobody reads it; the access log shows the request ended


def install(app: FastAPI) -> None:
    app.add_exception_handler(ClientDisconnect, _gone)
