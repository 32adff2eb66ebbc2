"""What to do with a key request, as pure functions (tested as tables: facts in, decision out).

A workspace's key is derived, not stored: HMAC(derivation secret, workspace id, generation). The
provisioner can therefore hand the same key back after a workspace restart without keeping any
key at rest, and several provisioners with the same secret agree. The generation only grows:
when an admin deletes a workspace's key in LiteLLM (or it expires), the next request makes the
next generation, a different value, so a deleted key never comes back.

Enforcement levels follow the platform's anti-downgrade rule: the level stored on a live key
wins over whatever a later request asks for; a request for another level is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

LEVELS = ("unrestricted", "standard", "design-first")  # least → most strict
DEFAULT_LEVEL = "standard"

Action = Literal["reuse", "generate", "refuse"]


def derive_key(secret: str, workspace_id: str, generation: int) -> str:
    """The key of `workspace_id` at `generation`: `sk-` and 43 URL-safe characters."""
    message = f"workspace-key:v1:{workspace_id.lower()}:{generation}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return "sk-" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def key_hash(key: str) -> str:
    """What LiteLLM stores instead of the key (and accepts in `/key/info?key=`)."""
    return hashlib.sha256(key.encode()).hexdigest()


def alias(workspace_id: str) -> str:
    return f"workspace-{workspace_id}"


def normalize_level(value: Any) -> tuple[str, bool]:
    """The level to use and whether the request's value was unknown (then `standard`, as the
    platform's provisioner does)."""
    if isinstance(value, str) and value.strip() in LEVELS:
        return value.strip(), False
    return DEFAULT_LEVEL, value not in (None, "")


def is_downgrade(stored: str, requested: str) -> bool:
    """Whether `requested` is less strict than `stored` (unknown levels count as standard)."""
    rank = {level: n for n, level in enumerate(LEVELS)}
    return rank.get(requested, 1) < rank.get(stored, 1)


def is_upgrade(stored: str, requested: str) -> bool:
    """Whether `requested` is stricter than `stored` (toward design-first)."""
    return stored != requested and is_downgrade(requested, stored)


def old_alias(workspace_id: str, generation: int) -> str:
    """The alias a rotated-out key moves to, so that the next generation can take the
    workspace's alias while the old key still works (LiteLLM keeps aliases unique)."""
    return f"workspace-{workspace_id}-g{generation}"


@dataclass(frozen=True)
class Stored:
    """The provisioner's memory of a workspace (never its key)."""

    generation: int
    level: str
    revoked_at: str | None = None  # the workspace is gone (or an admin revoked it): no more keys
    rotated_at: str | None = None  # when the current generation replaced the previous one


@dataclass(frozen=True)
class KeyFacts:
    """What LiteLLM says about the key of the current generation (None: not found)."""

    level: str | None
    expires: datetime | None
    blocked: bool
    alias: str | None = None  # its key_alias: a rotated-out key has `workspace-<id>-g<N>`

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and self.expires <= now

    def rotated_out(self, workspace_id: str, generation: int) -> bool:
        """A completed rotation replaced this generation (renamed, and blocked only after the
        next one was stored): the next generation exists. Renamed but not blocked is a rotation
        cut short, which the next request with the stricter level simply redoes."""
        return self.blocked and self.alias == old_alias(workspace_id, generation)


@dataclass(frozen=True)
class Decision:
    action: Action
    generation: int
    level: str  # the level the key has (reuse) or will have (generate)
    reason: str  # new | live | deleted | expired | blocked
    mismatch: bool = False  # the request asked for another level than the key keeps


def decide(
    stored: Stored | None, facts: KeyFacts | None, requested: str, now: datetime
) -> Decision:
    """Reuse the live key, make the next one, or refuse; never lower a live key's level."""
    generation = stored.generation if stored else 0
    if facts is not None:
        kept = facts.level if facts.level in LEVELS else (stored.level if stored else DEFAULT_LEVEL)
        if facts.blocked:
            return Decision("refuse", generation, kept, "blocked", kept != requested)
        if facts.expired(now):
            # A new key, but the old key's level: waiting for expiry must not be a way around it.
            return Decision("generate", generation + 1, kept, "expired", kept != requested)
        return Decision("reuse", generation, kept, "live", kept != requested)
    if stored is None:
        return Decision("generate", 0, requested, "new")
    # The key was deleted in LiteLLM: an admin's rotation. The next key takes the requested level.
    return Decision("generate", stored.generation + 1, requested, "deleted")


def generate_body(
    *,
    key: str,
    workspace_id: str,
    owner: str,
    workspace_name: str,
    level: str,
    guardrail_action: str,
    identity: str,
    generation: int,
    template_name: str,
    budget: float,
    budget_duration: str,
    rpm_limit: int,
    tpm_limit: int,
    duration: str,
    rotation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The /key/generate request: the platform's limits and metadata, plus how it was proven
    (and, for a rotated key, when and from which level: `rotated_at`, `rotated_from_level`)."""
    return {
        "key": key,
        "key_alias": alias(workspace_id),
        "user_id": owner,
        "max_budget": budget,
        "budget_duration": budget_duration,
        "rpm_limit": rpm_limit,
        "tpm_limit": tpm_limit,
        "duration": duration,
        # Not "workspace_id": LiteLLM 1.108.7 with a database refuses that name anywhere in a
        # /key/generate body (401 "workspace_id is not allowed in request body").
        "metadata": {
            "coder_workspace": workspace_id,
            "workspace_name": workspace_name,
            "username": owner,
            "workspace_owner": owner,
            "enforcement_level": level,
            "guardrail_action": guardrail_action,
            "template_name": template_name,
            "identity": identity,
            "generation": generation,
            "key_type": "workspace",
            "created_by": "workspace-key-provisioner",
            **(rotation or {}),
        },
    }


def facts_from_info(body: Any) -> KeyFacts | None:
    """LiteLLM's /key/info answer → KeyFacts; None when it is not shaped like one."""
    info = body.get("info") if isinstance(body, dict) else None
    if not isinstance(info, dict):
        return None
    metadata = info.get("metadata")
    level = metadata.get("enforcement_level") if isinstance(metadata, dict) else None
    expires_raw = info.get("expires")
    expires = None
    if isinstance(expires_raw, str) and expires_raw:
        try:
            expires = datetime.fromisoformat(expires_raw)
        except ValueError:
            expires = None
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
    blocked = info.get("blocked") is True
    key_alias = info.get("key_alias")
    return KeyFacts(
        level if isinstance(level, str) else None,
        expires,
        blocked,
        key_alias if isinstance(key_alias, str) else None,
    )
