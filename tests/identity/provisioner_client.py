"""Drive the provisioner app in-process (httpx over ASGI, lifespan run), for the identity tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from key_provisioner.app import create_app
from key_provisioner.settings import from_env
from key_provisioner.store import Event, Store

KEY_PATH = "/api/v1/keys/workspace"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class Answer:
    status: int
    body: Any
    headers: httpx.Headers

    @property
    def key(self) -> str:
        assert self.status in (200, 201), (self.status, self.body)
        return str(self.body["key"])


def key_body(workspace_id: str, username: str = "alice", **extra: Any) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "username": username,
        "workspace_name": "dev",
        "enforcement_level": "standard",
        "guardrail_action": "block",
        **extra,
    }


async def exchange(
    env: Mapping[str, str], requests: list[dict[str, Any]], **app_options: Any
) -> list[Answer]:
    """Start the app on `env`, send each request in order, stop it; the answers in order.

    A request is {"body": …, "agent_token": …, "secret": …, "raw": …, "path": …, "method": …,
    "bearer": …}; `secret` defaults to the env's PROVISIONER_SECRET.
    """
    app = create_app(from_env(env), **app_options)
    answers: list[Answer] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://provisioner") as client:
            for item in requests:
                headers: dict[str, str] = {}
                bearer = item.get("bearer", item.get("secret", env["PROVISIONER_SECRET"]))
                if bearer is not None:
                    headers["Authorization"] = f"Bearer {bearer}"
                if item.get("agent_token"):
                    headers["Coder-Agent-Token"] = item["agent_token"]
                method, path = item.get("method", "POST"), item.get("path", KEY_PATH)
                if "raw" in item:
                    response = await client.request(
                        method, path, content=item["raw"], headers=headers
                    )
                elif method == "POST":
                    response = await client.post(path, json=item.get("body"), headers=headers)
                else:
                    response = await client.request(method, path, headers=headers)
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
                answers.append(Answer(response.status_code, body, response.headers))
    return answers


def events(env: Mapping[str, str], kind: str | None = None) -> list[Event]:
    store = Store(from_env(env).db_path)
    try:
        return store.events(kind, limit=1000)
    finally:
        store.close()
