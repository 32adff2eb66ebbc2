"""The API description for admins only (DRIFT_API_DOCS=admin): `/openapi.json` and `/docs`, a
server-rendered list of the operations under the pages' strict CSP (no script at all, nothing
from another site). FastAPI's own /docs and /redoc load JavaScript from a CDN: never served."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .admin_pages import SECURITY_HEADERS, _gate, csrf_of, render_html
from .routes import ctx_of, require_admin

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    await require_admin(request)
    return JSONResponse(request.app.openapi(), headers={"Cache-Control": "no-store"})


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> Response:
    if (refused := await _gate(request)) is not None:
        return refused
    spec = request.app.openapi()
    operations: list[dict[str, Any]] = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "statuses": sorted(op.get("responses", {})),
                    "tags": op.get("tags", []),
                }
            )
    html = render_html(
        ctx_of(request),
        "api_docs.html",
        spec=spec,
        operations=operations,
        signed_in=True,
        csrf=csrf_of(request),
    )
    return HTMLResponse(html, headers=SECURITY_HEADERS)
