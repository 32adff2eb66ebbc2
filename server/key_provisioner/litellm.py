"""The three LiteLLM calls the provisioner makes (shapes in shared/reference/litellm.md).

* find: `GET /key/info?key=<sha256 of the key>` with the master key. LiteLLM looks a non-`sk-`
  value up as the stored hash, so the key itself never travels in a URL (or an access log).
  Only LiteLLM's own 404 ("Key not found in database") means no such key: any other 404 (a
  proxy that does not pass /key/info on) read as "no key" made the provisioner mint the next
  generation at the requested level, past the anti-downgrade rule and a blocked key.
* generate: `POST /key/generate` with the master key and the derived key value.
* delete: `POST /key/delete` with the master key and the hash of an expired key, before its
  next generation takes the workspace's key alias (LiteLLM keeps aliases unique).
* own_info: `GET /key/info` with a workspace's own key (the `/api/v1/keys/info` passthrough).
* block: `POST /key/block` with the hash: how a key is revoked (issue 18). The row stays, with
  its spend, alias and metadata, so admins keep the history; the key itself gets 401. Only
  LiteLLM's own "Key not found" 404 counts as nothing to block.
* rename: `POST /key/update` with the hash and a new `key_alias`, so that a rotated-out key frees
  the workspace's alias for the next generation while it still works.

Every failure is a LiteLLMError with a sentence; no message carries a key or the master key.
Each call has a deadline over the whole exchange, not only per read: an answer dripped a byte at
a time would otherwise hold a key request's workspace lock, and a reconcile pass, without end.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from key_provisioner.keys import KeyFacts, facts_from_info, key_hash

if TYPE_CHECKING:  # pragma: no cover
    import httpx

MAX_ANSWER_BYTES = 1024 * 1024


class LiteLLMError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


class LiteLLM:
    def __init__(
        self,
        base_url: str,
        master_key: str,
        *,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._master_key = master_key
        self._timeout = timeout
        self._transport = transport

    def __repr__(self) -> str:
        return f"LiteLLM({self.base_url!r})"

    async def find(self, key: str) -> KeyFacts | None:
        """What LiteLLM knows about `key`; None when it has no such key."""
        answer = await self._call(
            "GET", "/key/info", self._master_key, params={"key": key_hash(key)}, hide=(key,)
        )
        if answer.status == 404 and _key_not_found(answer):
            return None  # 1.108.7: {"error": {"message": "Key not found in database", …}}
        if answer.status != 200:
            where = (
                " (not LiteLLM's answer for an unknown key: is /key/info served at LITELLM_URL?)"
                if answer.status == 404
                else ""
            )
            raise LiteLLMError(
                f"LiteLLM answered HTTP {answer.status} to /key/info{where}: {_said(answer)}"
            )
        info = answer.body.get("info") if isinstance(answer.body, dict) else None
        if isinstance(info, dict) and info.get("status") == "deleted":
            return None  # 1.108.7 answers a deleted key from its archive table: not a key
        facts = facts_from_info(answer.body)
        if facts is None:
            raise LiteLLMError(
                "LiteLLM's /key/info answer has no `info`: is LITELLM_URL a LiteLLM proxy?"
            )
        return facts

    async def generate(self, body: dict[str, Any]) -> None:
        """Create the key `body["key"]`; raise LiteLLMError when LiteLLM does not."""
        key = str(body["key"])
        answer = await self._call(
            "POST", "/key/generate", self._master_key, json_body=body, hide=(key,)
        )
        if answer.status not in (200, 201):
            raise LiteLLMError(
                f"LiteLLM answered HTTP {answer.status} to /key/generate: {_said(answer, key)}"
            )
        made = answer.body.get("key") if isinstance(answer.body, dict) else None
        if made != key:
            raise LiteLLMError(
                "LiteLLM made a key other than the one asked for (it ignored `key` in /key/generate); "
                "this provisioner needs a LiteLLM that accepts chosen key values"
            )

    async def delete(self, key: str) -> None:
        """Remove `key` (by its hash) so that its alias is free for the next generation."""
        answer = await self._call(
            "POST",
            "/key/delete",
            self._master_key,
            json_body={"keys": [key_hash(key)]},
            hide=(key,),
        )
        if answer.status not in (200, 404):
            raise LiteLLMError(
                f"LiteLLM answered HTTP {answer.status} to /key/delete: {_said(answer, key)}"
            )

    async def block(self, key: str) -> None:
        """Revoke `key`: LiteLLM keeps the row (spend history) and refuses the key (401)."""
        answer = await self._call(
            "POST", "/key/block", self._master_key, json_body={"key": key_hash(key)}, hide=(key,)
        )
        if answer.status == 404 and _key_not_found(answer):
            return  # LiteLLM has no such key: nothing can use it
        if answer.status not in (200, 201):
            where = (
                " (not LiteLLM's answer for an unknown key: is /key/block served at LITELLM_URL?)"
                if answer.status == 404
                else ""
            )
            raise LiteLLMError(
                f"LiteLLM answered HTTP {answer.status} to /key/block{where}: {_said(answer, key)}"
            )

    async def rename(self, key: str, new_alias: str) -> None:
        """Move `key` to another alias (it keeps working)."""
        answer = await self._call(
            "POST",
            "/key/update",
            self._master_key,
            json_body={"key": key_hash(key), "key_alias": new_alias},
            hide=(key,),
        )
        if answer.status not in (200, 201):
            raise LiteLLMError(
                f"LiteLLM answered HTTP {answer.status} to /key/update: {_said(answer, key)}"
            )

    async def own_info(self, key: str) -> Answer:
        """`GET /key/info` as the key itself: LiteLLM's answer, to pass through."""
        return await self._call("GET", "/key/info", key, hide=(key,))

    async def alive(self) -> bool:
        try:
            answer = await self._call("GET", "/health/liveliness", None)
        except LiteLLMError:
            return False
        return answer.status == 200

    async def _call(
        self,
        method: str,
        path: str,
        bearer: str | None,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        hide: tuple[str, ...] = (),
    ) -> Answer:
        import httpx

        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            async with (
                asyncio.timeout(self._timeout),
                httpx.AsyncClient(
                    transport=self._transport,
                    timeout=httpx.Timeout(self._timeout),
                    follow_redirects=False,
                    trust_env=True,
                ) as client,
                client.stream(
                    method, self.base_url + path, headers=headers, params=params, json=json_body
                ) as response,
            ):
                raw = bytearray()
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise LiteLLMError(
                            f"LiteLLM's answer to {path} was larger than {MAX_ANSWER_BYTES} bytes"
                        )
                status = response.status_code
        except (httpx.TimeoutException, TimeoutError):
            raise LiteLLMError(
                f"LiteLLM at {self.base_url} did not answer {path} within {self._timeout:g} s"
            ) from None
        except (httpx.HTTPError, OSError) as exc:
            reason = _scrub(str(exc) or type(exc).__name__, (self._master_key, *hide))
            raise LiteLLMError(f"cannot reach LiteLLM at {self.base_url}: {reason[:160]}") from None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")[:200]
        return Answer(status, body)


def _key_not_found(answer: Answer) -> bool:
    """LiteLLM's own 404 for a key it does not have (1.108.7, checked against the real proxy:
    /key/block {"error": {"message": "Key not found."}}, /key/info {"error": {"message": "Key not
    found in database"}}), not the {"detail": "Not Found"} of a route that nobody serves (a proxy
    in front of LiteLLM that does not pass the route on), nor any other "Not Found": that one
    must not count as a revocation done, or as a key that does not exist."""
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return isinstance(message, str) and message.lower().startswith("key not found")


def _said(answer: Answer, *hide: str) -> str:
    """LiteLLM's own message ({"error": {"message"}} or FastAPI's {"detail"}), one short line."""
    body = answer.body
    text = ""
    if isinstance(body, dict):
        err = body.get("error", body.get("detail"))
        if isinstance(err, dict):
            err = err.get("message", err.get("error"))
        text = err if isinstance(err, str) else json.dumps(err)[:200] if err else ""
    elif isinstance(body, str):
        text = body
    return _scrub(" ".join(text.split())[:200], hide) or "no reason given"


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "(secret)")
    return text
