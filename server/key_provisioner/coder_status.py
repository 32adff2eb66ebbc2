"""Ask Coder whether a workspace still exists, as the provisioner's own API token.

`GET /api/v2/workspaces/{id}` (coderd/workspaces.go): a workspace is soft-deleted when its delete
build succeeds, and from then on Coder answers **410 Gone** with `Workspace "<its id>" was
deleted, you can view this workspace by specifying '?deleted=true' …` (the id in every version
since v0.x). That is the only answer taken as "gone", and only when it names this very workspace:
a 410 from something else at CODER_URL (a proxy's retired route answers 410 to every path) would
otherwise revoke a small fleet whole, under the brake's MAX_ALWAYS. A 404 is not gone either:
Coder answers 404 both for an id it never had and for a workspace this token may not read (a
token that lost its role would otherwise revoke the whole fleet). While a delete build is queued
or runs, the answer is 200 with `latest_build.transition == "delete"` and its status `pending`
or `deleting` ("deleting": enough for the template's delete hook, which runs inside that very
build, never for the reconcile loop); a delete build that was canceled or failed leaves the
workspace in place ("present").

Every request has a deadline over the whole answer (not per read: a peer dripping a byte at a
time would hold a pass forever) and a size cap; a failure is an answer ("unavailable"), never an
exception, so one bad request cannot end a pass. What Coder says is kept to one short line.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    import httpx

WORKSPACE_PATH = "/api/v2/workspaces/{workspace_id}"
MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_DETAIL = 200  # characters of Coder's words kept in a state (events, logs, answers)
DELETING = ("pending", "deleting")  # a delete build's statuses while it is queued or runs

State = Literal["present", "deleting", "gone", "unknown", "unavailable"]


@dataclass(frozen=True)
class WorkspaceState:
    state: State
    detail: str  # one short line: what Coder said, or why it could not be asked


class CoderWorkspaces:
    """Coder at `base_url`, asked with `api_token` (never shown in a message)."""

    def __init__(
        self,
        base_url: str,
        api_token: str,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = api_token
        self._timeout = timeout
        self._transport = transport

    def __repr__(self) -> str:
        return f"CoderWorkspaces({self.base_url!r})"

    def client(self) -> httpx.AsyncClient:
        """One client for a pass (connections reused); the caller closes it."""
        import httpx

        return httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=False,
            trust_env=True,
        )

    async def state(self, client: httpx.AsyncClient, workspace_id: str) -> WorkspaceState:
        import httpx

        try:
            uuid.UUID(workspace_id)
        except ValueError:
            return WorkspaceState("unknown", "not a Coder workspace id (a UUID)")
        url = self.base_url + WORKSPACE_PATH.format(workspace_id=workspace_id)
        headers = {
            "Coder-Session-Token": self._token,
            "Accept": "application/json",
            "Accept-Encoding": "identity",
        }
        try:
            async with (
                asyncio.timeout(self._timeout),
                client.stream("GET", url, headers=headers) as response,
            ):
                raw = bytearray()
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        return WorkspaceState(
                            "unavailable", f"answer larger than {MAX_ANSWER_BYTES} bytes"
                        )
                status = response.status_code
        except (httpx.TimeoutException, TimeoutError):
            return WorkspaceState("unavailable", f"no answer within {self._timeout:g} s")
        except (httpx.HTTPError, OSError) as exc:
            reason = (str(exc) or type(exc).__name__).replace(self._token, "(token)")
            return WorkspaceState("unavailable", f"cannot reach Coder: {reason[:160]}")
        return judge(status, _json(raw), workspace_id)


def judge(status: int, body: Any, workspace_id: str) -> WorkspaceState:
    """Coder's answer → a state (pure; tested as a table)."""
    said = _message(body)
    if status == 410:
        if workspace_id.lower() not in _full_message(body).lower():
            return WorkspaceState(
                "unknown", f"410 but not about this workspace: is CODER_URL Coder? ({said})"
            )
        return WorkspaceState("gone", said)
    if status == 200:
        if not isinstance(body, dict) or str(body.get("id", "")).lower() != workspace_id.lower():
            return WorkspaceState("unknown", "200 but not this workspace: is CODER_URL Coder?")
        build = body.get("latest_build")
        transition = _word(build.get("transition") if isinstance(build, dict) else None)
        if transition != "delete":
            return WorkspaceState("present", f"latest build: {transition}")
        build_status = _word(build.get("status"))
        if build_status in DELETING:
            return WorkspaceState("deleting", f"its latest build is a delete ({build_status})")
        if build_status in ("canceling", "canceled", "failed"):
            return WorkspaceState(
                "present",
                f"its latest build, a delete, is {build_status}: the workspace stays",
            )
        return WorkspaceState("unknown", f"its latest build is a delete, status {build_status}")
    if status in (401, 403):
        return WorkspaceState(
            "unavailable", f"Coder refused the provisioner's API token (HTTP {status})"
        )
    if status == 404:
        return WorkspaceState(
            "unknown", "404: no such workspace, or CODER_API_TOKEN cannot read it (not revoked)"
        )
    if status >= 500 or status == 429:
        return WorkspaceState("unavailable", f"HTTP {status}{': ' + said if said else ''}")
    return WorkspaceState("unknown", f"HTTP {status}{': ' + said if said else ''}")


def _json(raw: bytes | bytearray) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _full_message(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    return " ".join(p for p in (body.get("message"), body.get("detail")) if isinstance(p, str))


def _message(body: Any) -> str:
    return _line(_full_message(body))


def _word(value: Any) -> str:
    """A field that should be a short word (a transition, a status), as one short line."""
    return _line(value if isinstance(value, str) else json.dumps(value)[: MAX_DETAIL + 1])


def _line(text: str) -> str:
    flat = " ".join("".join(c if c.isprintable() else " " for c in text[: 4 * MAX_DETAIL]).split())
    return flat[:MAX_DETAIL]
