"""A loopback stand-in of the Coder API routes the identity check uses, for tests only.

Shapes and status codes follow Coder's source and API reference (docs/identity.md cites them):

  POST /api/v2/workspaceagents/me/log-source   Coder-Session-Token: <agent token>
        body {"id", "display_name", "icon"} → 200 codersdk.WorkspaceAgentLogSource
        {"workspace_agent_id", "id", "created_at", "display_name", "icon"} the first time, 201
        with the same fields when that id exists for the agent (v2.12+)
  GET  /api/v2/workspaceagents/me/manifest     agent token → 200 agentsdk.Manifest subset
        {"agent_id", "agent_name", "owner_name", "workspace_id", "workspace_name", ...}
        (v2.4 … v2.12; removed in v2.13)
  GET  /api/v2/workspaces/{id}                 API token → 200 codersdk.Workspace subset
        {"id", "name", "owner_id", "owner_name", "template_id", "template_name",
         "latest_build": {"transition", "status", "resources": [{"agents": [{"id", "name"}]}]}}
        400 for a non-UUID id, 404 unknown workspace, 401 bad API token, 410 Gone once the
        workspace was deleted (Coder soft-deletes: coderd/workspaces.go answers 410 "Workspace
        … was deleted" unless `?include_deleted=true`); while a delete build runs, 200 with
        latest_build.transition "delete", status "deleting"
  GET  /api/v2/buildinfo                       no auth → {"version", "external_url"}
  anything else                                404 {"message": "Route not found."}

An agent token authenticates only while its agent is in the latest build of a workspace
(Coder's ExtractWorkspaceAgentAndLatestBuild): `rebuild()`, `stop()`, `begin_delete()` and
`delete()` kill old tokens; `end_delete()` ends a delete build as canceled (or failed): the
workspace stays; `forget()` removes a workspace entirely (404, as for an id Coder never had or
one the API token may not read).
Failures are Coder's: 401 {"message": "Workspace agent not authorized.", "detail": ...}.
`mode = "unavailable"` answers 503 to everything, `"notcoder"` 404 (a wrong URL); `stop_serving()` closes the port.

    with run_coder(version="v2.24.2") as coder:
        ws = coder.add_workspace(owner="alice")
        ws.id, ws.agent.token
"""

from __future__ import annotations

import contextlib
import hmac
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self

from tests.standins._json_http import read_body, send_json

LOG_SOURCE = "/api/v2/workspaceagents/me/log-source"
MANIFEST = "/api/v2/workspaceagents/me/manifest"
WORKSPACES = "/api/v2/workspaces/"
BUILDINFO = "/api/v2/buildinfo"


@dataclass
class Agent:
    id: str
    name: str
    token: str


@dataclass
class Workspace:
    id: str
    name: str
    owner: str
    owner_id: str
    template_id: str
    template_name: str
    agents: list[Agent]
    transition: str = "start"
    build_number: int = 1
    deleted: bool = False
    build_status: str | None = None  # the latest build's status when not the usual one

    @property
    def agent(self) -> Agent:
        return self.agents[0]


class Received(NamedTuple):
    method: str
    path: str
    token: str  # the Coder-Session-Token sent ("" when none)
    body: Any


def _version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.lstrip("v").split(".")[:2]
    return int(major), int(minor)


class CoderStandin:
    def __init__(
        self, version: str = "v2.24.2", api_token: str = "coder-api-token-Rk2mW9qT"
    ) -> None:
        self.version = version
        self.api_token = api_token
        self.mode = "normal"
        self.delay = 0.0
        self.workspaces: dict[str, Workspace] = {}
        self.log_sources: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- which routes this Coder version has -----------------------------------------------------

    @property
    def has_log_source(self) -> bool:
        return _version_tuple(self.version) >= (2, 12)

    @property
    def has_manifest(self) -> bool:
        return _version_tuple(self.version) < (2, 13)

    @property
    def manifest_has_workspace(self) -> bool:
        return _version_tuple(self.version) >= (2, 4)

    # -- the world ----------------------------------------------------------------------------

    def add_workspace(
        self, owner: str = "alice", name: str = "dev", template: str = "ai-dev"
    ) -> Workspace:
        ws = Workspace(
            id=str(uuid.uuid4()),
            name=name,
            owner=owner,
            owner_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, f"user-{owner}")),
            template_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, f"template-{template}")),
            template_name=template,
            agents=[Agent(str(uuid.uuid4()), "main", str(uuid.uuid4()))],
        )
        with self._lock:
            self.workspaces[ws.id] = ws
        return ws

    def rebuild(self, ws: Workspace) -> Agent:
        """A new build (a restart): a new agent with a new token; the old token stops working."""
        with self._lock:
            ws.agents = [Agent(str(uuid.uuid4()), "main", str(uuid.uuid4()))]
            ws.transition = "start"
            ws.build_number += 1
            ws.build_status = None
            return ws.agent

    def stop(self, ws: Workspace) -> None:
        """A stop build: the latest build has no agents, so no agent token of it authenticates."""
        with self._lock:
            ws.agents = []
            ws.transition = "stop"
            ws.build_number += 1
            ws.build_status = None

    def begin_delete(self, ws: Workspace) -> None:
        """A delete build is running (what the template's destroy-time hook sees)."""
        with self._lock:
            ws.agents = []
            ws.transition = "delete"
            ws.build_number += 1
            ws.build_status = None

    def end_delete(self, ws: Workspace, status: str = "canceled") -> None:
        """The delete build was canceled (or failed): the workspace stays, its latest build a
        delete with that status, until its owner starts it again."""
        with self._lock:
            ws.build_status = status

    def delete(self, ws: Workspace) -> None:
        """The delete build succeeded: Coder marks the workspace deleted and answers 410."""
        with self._lock:
            ws.agents = []
            ws.transition = "delete"
            ws.deleted = True

    def forget(self, ws: Workspace) -> None:
        with self._lock:
            self.workspaces.pop(ws.id, None)

    def agent_requests(self) -> list[Received]:
        return [r for r in list(self.requests) if r.path.startswith("/api/v2/workspaceagents/me/")]

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> CoderStandin:
        server = ThreadingHTTPServer(("127.0.0.1", self._port), _Handler)
        server.daemon_threads = True
        server.standin = self  # type: ignore[attr-defined]
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop_serving(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop_serving()

    # -- answers (called from the handler) ------------------------------------------------------

    def _agent_for(self, token: str) -> tuple[Workspace, Agent] | None:
        for ws in self.workspaces.values():
            for agent in ws.agents:
                if hmac.compare_digest(agent.token.encode(), token.encode()):
                    return ws, agent
        return None

    def answer(self, method: str, path: str, token: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(Received(method, path, token, body))
            if self.mode == "unavailable":
                return 503, {"message": "Service Unavailable"}
            if self.mode == "notcoder":
                return 404, {"message": "Route not found."}
            if path == BUILDINFO and method == "GET":
                return 200, {
                    "version": self.version,
                    "external_url": "https://github.com/coder/coder",
                }
            if path == LOG_SOURCE and method == "POST" and self.has_log_source:
                return self._log_source(token, body)
            if path == MANIFEST and method == "GET" and self.has_manifest:
                return self._manifest(token)
            if path.startswith(WORKSPACES) and method == "GET" and path.count("/") == 4:
                return self._workspace(token, path[len(WORKSPACES) :])
            return 404, {"message": "Route not found."}

    def _agent_auth(self, token: str) -> tuple[int, Any] | tuple[Workspace, Agent]:
        if not token:
            return 401, {"message": 'Cookie "coder_session_token" must be provided.'}
        try:
            uuid.UUID(token)
        except ValueError:
            return 401, {
                "message": "Workspace agent token invalid.",
                "detail": f"An agent token must be a valid UUIDv4. (len {len(token)})",
            }
        found = self._agent_for(token)
        if found is None:
            return 401, {
                "message": "Workspace agent not authorized.",
                "detail": "The agent cannot authenticate until the workspace provision job has been "
                "completed. If the job is no longer running, this agent is invalid.",
            }
        return found

    def _log_source(self, token: str, body: Any) -> tuple[int, Any]:
        auth = self._agent_auth(token)
        if isinstance(auth[0], int):
            return auth  # type: ignore[return-value]
        _ws, agent = auth  # type: ignore[misc]
        if not isinstance(body, dict) or "id" not in body:
            return 400, {"message": "Request body must be valid JSON."}
        key = (agent.id, str(body["id"]))
        now = datetime.now(UTC).isoformat()
        row = {
            "workspace_agent_id": agent.id,
            "id": str(body["id"]),
            "created_at": now,
            "display_name": body.get("display_name", ""),
            "icon": body.get("icon", ""),
        }
        if key in self.log_sources:
            return 201, row  # Coder: unique violation → 201 with the request's fields
        self.log_sources[key] = row
        return 200, row

    def _manifest(self, token: str) -> tuple[int, Any]:
        auth = self._agent_auth(token)
        if isinstance(auth[0], int):
            return auth  # type: ignore[return-value]
        ws, agent = auth  # type: ignore[misc]
        manifest: dict[str, Any] = {
            "agent_id": agent.id,
            "git_auth_configs": 0,
            "vscode_port_proxy_uri": "",
            "apps": [],
            "environment_variables": {},
            "directory": "",
            "metadata": [],
            "scripts": [],
        }
        if self.manifest_has_workspace:
            manifest |= {"owner_name": ws.owner, "workspace_id": ws.id}
        return 200, manifest

    def _workspace(self, token: str, workspace_id: str) -> tuple[int, Any]:
        if not hmac.compare_digest(token.encode(), self.api_token.encode()):
            return 401, {"message": "Invalid API key.", "detail": "API key is invalid."}
        try:
            uuid.UUID(workspace_id)
        except ValueError:
            return 400, {"message": f'Invalid UUID "{workspace_id}".'}
        ws = self.workspaces.get(workspace_id)
        if ws is None:
            return 404, {"message": "Resource not found or you do not have access to this resource"}
        if ws.deleted:
            return 410, {
                "message": f'Workspace "{ws.id}" was deleted, you can view this workspace by '
                "specifying '?deleted=true' and trying again."
            }
        build_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ws.id}/{ws.build_number}"))
        return 200, {
            "id": ws.id,
            "name": ws.name,
            "owner_id": ws.owner_id,
            "owner_name": ws.owner,
            "organization_id": "7c60d51f-b44e-4682-87d6-449835ea4de6",
            "template_id": ws.template_id,
            "template_name": ws.template_name,
            "template_display_name": ws.template_name,
            "outdated": False,
            "latest_build": {
                "id": build_id,
                "build_number": ws.build_number,
                "workspace_id": ws.id,
                "workspace_name": ws.name,
                "workspace_owner_name": ws.owner,
                "transition": ws.transition,
                "status": ws.build_status
                or {"start": "running", "stop": "stopped"}.get(ws.transition, "deleting"),
                "resources": [
                    {
                        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{build_id}/container")),
                        "name": "workspace",
                        "type": "docker_container",
                        "agents": [
                            {
                                "id": a.id,
                                "name": a.name,
                                "status": "connected",
                                "lifecycle_state": "ready",
                            }
                            for a in ws.agents
                        ],
                    }
                ]
                if ws.agents
                else [],
            },
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY a kept-alive client waits for
    # the delayed ACK (40 ms a request here), which coderd never makes anyone do.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self, method: str) -> None:
        standin: CoderStandin = self.server.standin  # type: ignore[attr-defined]
        body = read_body(self)
        if standin.delay:
            time.sleep(standin.delay)
        token = self.headers.get("Coder-Session-Token", "")
        status, payload = standin.answer(method, self.path.split("?", 1)[0], token, body)
        send_json(self, status, payload)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


@contextlib.contextmanager
def run_coder(
    version: str = "v2.24.2", api_token: str = "coder-api-token-Rk2mW9qT"
) -> Iterator[CoderStandin]:
    standin = CoderStandin(version, api_token)
    standin.start()
    try:
        yield standin
    finally:
        standin.stop_serving()


__all__ = ["Agent", "CoderStandin", "Workspace", "run_coder"]
