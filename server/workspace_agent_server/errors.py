"""HTTP errors as sentences: every refusal has a `detail` a person can act on and a short
`reason` a program can switch on (also the label of `drift_reports_rejected_total`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

MAX_ERRORS_SHOWN = 20


class ErrorItem(BaseModel):
    loc: str
    msg: str


class ErrorBody(BaseModel):
    """Every refusal's JSON body (documented in the OpenAPI for each status a route can give)."""

    detail: str
    reason: str
    errors: list[ErrorItem] | None = None  # 422 only: where and what, never the input


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these refusal statuses, each with the error body."""
    words = {
        401: "no credential, or an unknown or revoked one",
        403: "a valid credential of the wrong kind, or for another workspace",
        404: "no such workspace",
        413: "body too large",
        422: "not valid (the errors say where)",
        429: "too many requests: try again after Retry-After seconds",
        503: "this part of the server is off (its secret is not configured)",
    }
    return {status: {"model": ErrorBody, "description": words[status]} for status in statuses}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        *,
        count_as: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.count_as = count_as  # a rejected report: counted under this reason
        self.headers = headers
        self.extra = extra or {}  # more fields for the JSON body (e.g. the validation errors)


def describe_validation(what: str, errors: Sequence[Any]) -> tuple[str, list[dict[str, str]]]:
    """Pydantic errors → one sentence plus a short list (locations and messages, never input)."""
    shown = [
        {
            "loc": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "(body)",
            "msg": str(e.get("msg", "invalid")),
        }
        for e in list(errors)[:MAX_ERRORS_SHOWN]
    ]
    if not shown:
        return f"{what} is not valid", []
    first = shown[0]
    more = len(errors) - 1
    tail = f" (and {more} more problem{'s' if more != 1 else ''})" if more else ""
    return f"{what} is not valid: {first['loc']}: {first['msg']}{tail}", shown
