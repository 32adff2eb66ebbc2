"""Verify "I am workspace X" with Coder, from the workspace's own agent token.

Coder gives every workspace agent a token (`CODER_AGENT_TOKEN`) that Coder accepts only while
the agent belongs to the latest build of a live workspace. Two HTTP calls turn a claim into a
verified identity (docs/identity.md has the versions and why these routes):

1. As the agent: `POST /api/v2/workspaceagents/me/log-source` with a fixed log-source id
   (idempotent: the same id is created once per agent) answers `workspace_agent_id`. Coder
   before the route existed (≤ v2.11) answers 404; then `GET /api/v2/workspaceagents/me/manifest`
   (removed in v2.13) gives `agent_id` (and `workspace_id` since v2.4).
2. As the server's own Coder API token: `GET /api/v2/workspaces/{claimed id}` lists the agents
   of the workspace's latest build; the claim holds only if the agent from step 1 is one of them.
   The same answer gives the owner, name and template.

A positive answer is cached for a short time (`cache_ttl`) so that a workspace retrying does
not hit Coder each time; refusals are never cached. Step 1's answer (which agent holds a token)
is cached on its own for as long, so claims of ever new workspace ids with one token cost one call
each, not two; and a caller may pass `may_ask`, asked before any call to Coder, to limit how many
lookups a client can cause (a flood of fresh ids then gets TooManyLookups, not Coder calls).
Neither token ever appears in a message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    import httpx

# How a workspace hands its agent token to our servers (never as the Authorization header,
# which keeps the platform's bearer secret or the drift token).
AGENT_TOKEN_HEADER = "Coder-Agent-Token"
# How Coder wants any token.
CODER_TOKEN_HEADER = "Coder-Session-Token"

LOG_SOURCE_PATH = "/api/v2/workspaceagents/me/log-source"
MANIFEST_PATH = "/api/v2/workspaceagents/me/manifest"
WORKSPACE_PATH = "/api/v2/workspaces/{workspace_id}"
BUILDINFO_PATH = "/api/v2/buildinfo"

# The log source the identity check creates once per agent (Coder keeps one row per agent and
# id; a repeat answers 201 with the same agent id). Fixed so that it is never duplicated.
IDENTITY_LOG_SOURCE_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "workspace-agent:identity-check"))
IDENTITY_LOG_SOURCE = {
    "id": IDENTITY_LOG_SOURCE_ID,
    "display_name": "Workspace identity check",
    "icon": "/emojis/1f511.png",
}

MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a workspace with many resources is large, but not this
MAX_CACHE_ENTRIES = 10_000

ProvenBy = Literal["log-source", "manifest"]


@dataclass(frozen=True)
class VerifiedWorkspace:
    """Who Coder says the caller is: every field comes from Coder, none from the caller."""

    workspace_id: str
    workspace_name: str
    owner: str  # the owner's user name
    owner_id: str
    template_id: str
    template_name: str
    agent_id: str
    agent_name: str
    proven_by: ProvenBy  # which agent route answered (tells the Coder generation)


class IdentityRefused(Exception):
    """Coder does not vouch for the claim; `message` may be shown to the caller as is."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # short machine word: token, mismatch, unknown-workspace, not-running


class CoderUnavailable(Exception):
    """Coder could not be asked (down, slow, misconfigured): nothing is decided."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TooManyLookups(Exception):
    """The caller's budget of identity checks sent to Coder is spent; nothing was asked."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many identity checks: try again in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any  # parsed JSON or None


class CoderIdentity:
    """A Coder deployment at `base_url`, asked with the server's own `api_token`."""

    def __init__(
        self,
        base_url: str,
        api_token: str,
        *,
        timeout: float = 5.0,
        cache_ttl: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("the Coder URL must start with http:// or https://")
        if not api_token:
            raise ValueError("a Coder API token is needed to look workspaces up")
        self.base_url = base_url.rstrip("/")
        self._api_token = api_token
        self._timeout = timeout
        self._cache_ttl = cache_ttl
        self._transport = transport
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, VerifiedWorkspace]] = OrderedDict()
        # step 1 per agent token: (agent id, the manifest's workspace id, which route answered)
        self._agents: OrderedDict[str, tuple[float, tuple[str, str | None, ProvenBy]]] = (
            OrderedDict()
        )

    def __repr__(self) -> str:  # never the token
        return f"CoderIdentity({self.base_url!r})"

    # -- the one question --------------------------------------------------------------------

    async def verify(
        self,
        agent_token: str,
        claimed_workspace_id: str,
        may_ask: Callable[[], float | None] | None = None,
    ) -> VerifiedWorkspace:
        """The caller's workspace as Coder knows it, if the agent token is one of its agents.

        Raises IdentityRefused (the claim is false or the token is dead) or CoderUnavailable
        (Coder could not be asked; nothing may be handed out). `may_ask()` is called before each
        call to Coder: a number (seconds to wait) raises TooManyLookups instead of asking.
        """
        token = agent_token.strip()
        claimed = claimed_workspace_id.strip().lower()
        if not _is_uuid(token):
            raise IdentityRefused(
                "the Coder agent token is not a Coder agent token (Coder's are UUIDs): "
                "send CODER_AGENT_TOKEN unchanged",
                "token",
            )
        if not _is_uuid(claimed):
            raise IdentityRefused(
                f"workspace_id {claimed_workspace_id[:80]!r} is not a Coder workspace id (a UUID); "
                "pass data.coder_workspace.me.id from the template",
                "unknown-workspace",
            )
        cache_key = hashlib.sha256(f"{token}\0{claimed}".encode()).hexdigest()
        cached = self._cached(cache_key)
        if cached is not None:
            return cached

        import httpx

        def ask() -> None:
            wait = may_ask() if may_ask is not None else None
            if wait is not None:
                raise TooManyLookups(wait)

        scrub = _Scrubber((token, self._api_token))
        token_key = hashlib.sha256(token.encode()).hexdigest()
        async with httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=False,
            trust_env=True,
        ) as client:
            agent = self._cached_agent(token_key)
            if agent is None:
                ask()
                agent = await self._agent_of(client, token, scrub)
                self._remember_agent(token_key, agent)
            agent_id, manifest_workspace, proven_by = agent
            if manifest_workspace is not None and manifest_workspace.lower() != claimed:
                raise _mismatch(claimed)
            ask()
            verified = await self._workspace_with(client, claimed, agent_id, proven_by, scrub)
        self._remember(cache_key, verified)
        return verified

    async def build_info(self) -> str | None:
        """Coder's version (`/api/v2/buildinfo`, no auth), or None when it does not answer."""
        import httpx

        try:
            async with httpx.AsyncClient(
                transport=self._transport, timeout=httpx.Timeout(self._timeout), trust_env=True
            ) as client:
                answer = await _request(
                    client, "GET", self.base_url + BUILDINFO_PATH, {}, limit=self._timeout
                )
        except (httpx.HTTPError, TimeoutError):
            return None
        if answer.status != 200 or not isinstance(answer.body, dict):
            return None
        version = answer.body.get("version")
        return version if isinstance(version, str) else ""

    # -- step 1: who is this agent token -----------------------------------------------------

    async def _agent_of(
        self, client: httpx.AsyncClient, token: str, scrub: _Scrubber
    ) -> tuple[str, str | None, ProvenBy]:
        headers = {CODER_TOKEN_HEADER: token}
        answer = await self._ask(
            client, "POST", LOG_SOURCE_PATH, headers, scrub, json_body=IDENTITY_LOG_SOURCE
        )
        if answer.status in (200, 201):
            agent_id = _field(answer.body, "workspace_agent_id")
            if agent_id is None:
                raise CoderUnavailable(
                    f"Coder at {self.base_url} answered {LOG_SOURCE_PATH} without a "
                    "workspace_agent_id: check CODER_URL"
                )
            return agent_id, None, "log-source"
        if answer.status == 404:  # a Coder older than the route: the v1 manifest still exists
            answer = await self._ask(client, "GET", MANIFEST_PATH, headers, scrub)
            if answer.status == 200:
                agent_id = _field(answer.body, "agent_id")
                if agent_id is None:
                    raise CoderUnavailable(
                        f"Coder at {self.base_url} answered {MANIFEST_PATH} without an agent_id"
                    )
                return agent_id, _field(answer.body, "workspace_id"), "manifest"
            if answer.status == 404:
                raise CoderUnavailable(
                    f"Coder at {self.base_url} has neither {LOG_SOURCE_PATH} nor {MANIFEST_PATH} "
                    "(HTTP 404): CODER_URL must be Coder's access URL (a Coder v2 deployment)"
                )
        if answer.status in (401, 403):
            raise IdentityRefused(
                "Coder does not accept this workspace's agent token: it was revoked, or the "
                "workspace was stopped or rebuilt since (restart the workspace)",
                "token",
            )
        raise self._unexpected(answer, LOG_SOURCE_PATH, scrub)

    # -- step 2: does that agent belong to the claimed workspace -----------------------------

    async def _workspace_with(
        self,
        client: httpx.AsyncClient,
        claimed: str,
        agent_id: str,
        proven_by: ProvenBy,
        scrub: _Scrubber,
    ) -> VerifiedWorkspace:
        path = WORKSPACE_PATH.format(workspace_id=claimed)
        answer = await self._ask(client, "GET", path, {CODER_TOKEN_HEADER: self._api_token}, scrub)
        if answer.status in (400, 404, 410):
            raise IdentityRefused(
                f"Coder shows no workspace {claimed!r} to this server (no such workspace, or its "
                "Coder API token cannot read it)",
                "unknown-workspace",
            )
        if answer.status in (401, 403):
            raise CoderUnavailable(
                f"Coder at {self.base_url} refused this server's API token (HTTP {answer.status}): "
                "check CODER_API_TOKEN (it needs read access to every workspace)"
            )
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise self._unexpected(answer, WORKSPACE_PATH, scrub)
        workspace = answer.body
        if str(workspace.get("id", "")).lower() != claimed:
            raise CoderUnavailable(
                f"Coder at {self.base_url} answered {WORKSPACE_PATH} with another workspace"
            )
        build = workspace.get("latest_build")
        build = build if isinstance(build, dict) else {}
        agents = _agents_of(build)
        match = next((a for a in agents if str(a.get("id", "")).lower() == agent_id.lower()), None)
        if match is None:
            raise _mismatch(claimed)
        if build.get("transition") not in (None, "start"):
            raise IdentityRefused(
                f"workspace {claimed!r} is not running (its latest build is a "
                f"{build.get('transition')!r})",
                "not-running",
            )
        return VerifiedWorkspace(
            workspace_id=claimed,
            workspace_name=_text(workspace.get("name")),
            owner=_text(workspace.get("owner_name")),
            owner_id=_text(workspace.get("owner_id")),
            template_id=_text(workspace.get("template_id")),
            template_name=_text(workspace.get("template_name")),
            agent_id=agent_id.lower(),
            agent_name=_text(match.get("name")),
            proven_by=proven_by,
        )

    # -- plumbing ----------------------------------------------------------------------------

    async def _ask(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        headers: dict[str, str],
        scrub: _Scrubber,
        json_body: Any = None,
    ) -> _Answer:
        import httpx

        url = self.base_url + path
        try:
            return await _request(client, method, url, headers, json_body, limit=self._timeout)
        except (httpx.TimeoutException, TimeoutError):
            raise CoderUnavailable(
                f"Coder at {self.base_url} did not answer within {self._timeout:g} s"
            ) from None
        except (httpx.HTTPError, OSError) as exc:
            raise CoderUnavailable(
                scrub(f"cannot reach Coder at {self.base_url}: {_reason(exc)}")
            ) from None
        except _TooLarge:
            raise CoderUnavailable(
                f"Coder at {self.base_url} answered {path} with more than {MAX_ANSWER_BYTES} bytes"
            ) from None

    def _unexpected(self, answer: _Answer, path: str, scrub: _Scrubber) -> CoderUnavailable:
        said = _message(answer.body)
        detail = f": {scrub(said)}" if said else ""
        return CoderUnavailable(
            f"Coder at {self.base_url} answered HTTP {answer.status} to {path}{detail}"
        )

    def _cached(self, key: str) -> VerifiedWorkspace | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        expires, verified = entry
        if self._clock() >= expires:
            del self._cache[key]
            return None
        return verified

    def _cached_agent(self, key: str) -> tuple[str, str | None, ProvenBy] | None:
        entry = self._agents.get(key)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            del self._agents[key]
            return None
        return entry[1]

    def _remember_agent(self, key: str, agent: tuple[str, str | None, ProvenBy]) -> None:
        if self._cache_ttl <= 0:
            return
        self._agents[key] = (self._clock() + self._cache_ttl, agent)
        self._agents.move_to_end(key)
        while len(self._agents) > MAX_CACHE_ENTRIES:
            self._agents.popitem(last=False)

    def _remember(self, key: str, verified: VerifiedWorkspace) -> None:
        if self._cache_ttl <= 0:
            return
        self._cache[key] = (self._clock() + self._cache_ttl, verified)
        self._cache.move_to_end(key)
        while len(self._cache) > MAX_CACHE_ENTRIES:
            self._cache.popitem(last=False)


class _TooLarge(Exception):
    pass


async def _request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    json_body: Any = None,
    *,
    limit: float,
) -> _Answer:
    """One request, the body read up to MAX_ANSWER_BYTES and parsed as JSON when it is JSON,
    all within `limit` seconds (httpx's timeout is per read: a peer dripping a byte at a time
    would hold the request without end); TimeoutError when it is not."""
    sent = {"Accept": "application/json", "Accept-Encoding": "identity", **headers}
    async with (
        asyncio.timeout(limit),
        client.stream(method, url, headers=sent, json=json_body) as response,
    ):
        raw = bytearray()
        async for chunk in response.aiter_bytes():
            raw += chunk
            if len(raw) > MAX_ANSWER_BYTES:
                raise _TooLarge
        status = response.status_code
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return _Answer(status, body)


class _Scrubber:
    """Remove the tokens of this request from any text that leaves the module."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = [s for s in secrets if s]

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "(token)")
        return text


def _mismatch(claimed: str) -> IdentityRefused:
    return IdentityRefused(
        f"this agent token does not belong to workspace {claimed!r}: a workspace can only ask "
        "for itself",
        "mismatch",
    )


def _agents_of(build: dict[str, Any]) -> list[dict[str, Any]]:
    agents: list[dict[str, Any]] = []
    resources = build.get("resources")
    for resource in resources if isinstance(resources, list) else []:
        listed = resource.get("agents") if isinstance(resource, dict) else None
        agents.extend(
            a for a in (listed if isinstance(listed, list) else []) if isinstance(a, dict)
        )
    return agents


def _field(body: Any, name: str) -> str | None:
    value = body.get(name) if isinstance(body, dict) else None
    return value.lower() if isinstance(value, str) and _is_uuid(value) else None


def _text(value: Any) -> str:
    return value[:200] if isinstance(value, str) else ""


def _message(body: Any) -> str:
    """Coder's own words: {"message": …, "detail": …}."""
    if not isinstance(body, dict):
        return ""
    parts = [body.get("message"), body.get("detail")]
    text = " ".join(p for p in parts if isinstance(p, str) and p)
    return " ".join(text.split())[:200]


def _reason(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return (str(exc) or type(exc).__name__)[:120]


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except (ValueError, AttributeError, TypeError):
        return False
