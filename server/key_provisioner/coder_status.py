"""Ask Coder whether a workspace still exists, as the provisioner's own API token.

`GET /api/v2/workspaces/{id}` (coderd/workspaces.go): a workspace is soft-deleted when its delete
build succeeds, and from then on Coder answers **410 Gone** ("Workspace … was deleted, you can view
this workspace by specifying '?include_deleted=true'"). That is the only answer taken as "gone".
A 404 is not: Coder answers 404 both for an id it never had and for a workspace this token may
not read (a token that lost its role would otherwise revoke the whole fleet). While a delete
build runs, the answer is 200 with `latest_build.transition == "delete"` ("deleting": enough for
the template's delete hook, which runs inside that very build, never for the reconcile loop).

Every request has a time limit and a size cap; a failure is an answer ("unavailable"), never an
exception, so one bad request cannot end a pass.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    import httpx

WORKSPACE_PATH = "/api/v2/workspaces/{workspace_id}"
MAX_ANSWER_BYTES = 4 * 1024 * 1024

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
            async with client.stream("GET", url, headers=headers) as response:
                raw = bytearray()
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        return WorkspaceState(
                            "unavailable", f"answer larger than {MAX_ANSWER_BYTES} bytes"
                        )
                status = response.status_code
        except httpx.TimeoutException:
            return WorkspaceState("unavailable", f"no answer within {self._timeout:g} s")
        except (httpx.HTTPError, OSError) as exc:
            reason = (str(exc) or type(exc).__name__).replace(self._token, "(token)")
            return WorkspaceState("unavailable", f"cannot reach Coder: {reason[:160]}")
        return judge(status, _json(raw), workspace_id)


def judge(status: int, body: Any, workspace_id: str) -> WorkspaceState:
    """Coder's answer → a state (pure; tested as a table)."""
    said = _message(body)
    if status == 410:
        return WorkspaceState("gone", said or "410 Gone")
    if status == 200:
        if not isinstance(body, dict) or str(body.get("id", "")).lower() != workspace_id.lower():
            return WorkspaceState("unknown", "200 but not this workspace: is CODER_URL Coder?")
        build = body.get("latest_build")
        transition = build.get("transition") if isinstance(build, dict) else None
        if transition == "delete":
            return WorkspaceState(
                "deleting", f"its latest build is a delete ({build.get('status')})"
            )
        return WorkspaceState("present", f"latest build: {transition}")
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


def _message(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    text = " ".join(p for p in (body.get("message"), body.get("detail")) if isinstance(p, str))
    return " ".join(text.split())[:200]
