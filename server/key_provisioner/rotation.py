"""Changing a live key's enforcement level means a new key (seed §12.6: "the key must be rotated").

Upward (toward design-first) is always allowed: the workspace asked for stricter rules. Downward
needs an admin's approval, recorded beforehand (`approve-level` or the admin API) and used once;
without it the live key keeps its level (the platform's anti-downgrade rule) and the attempt is
recorded.

The order makes a crash harmless and leaves no moment without a valid key:

1. the old key moves to the alias `workspace-<id>-g<N>` (it keeps working);
2. the new key (generation N+1, the new level, `rotated_at`, `rotated_from_level` in its
   metadata) is made under the workspace's alias;
3. the new generation and the old key's revocation are committed together in the store;
4. the old key is blocked in LiteLLM (a failure stays queued and is retried).

A crash after 1 or 2 leaves the store at N: the next request finds the old key live and rotates
again (1 is idempotent, 2 finds its key already made). A crash after 3 leaves a queued revocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from key_provisioner.keys import derive_key, generate_body, is_downgrade, is_upgrade, old_alias
from key_provisioner.litellm import LiteLLM, LiteLLMError
from key_provisioner.revoke import Revoker
from key_provisioner.settings import Settings
from key_provisioner.store import Approval, Pending, Store, now_text

Change = Literal["none", "raise", "lower-approved", "lower-refused"]


def level_change(kept: str, requested: str, approval: Approval | None, now: datetime) -> Change:
    """What a request for `requested` does to a live key of level `kept` (pure)."""
    if kept == requested:
        return "none"
    if is_upgrade(kept, requested):
        return "raise"
    if is_downgrade(kept, requested) and approval_valid(approval, requested, now):
        return "lower-approved"
    return "lower-refused"


def approval_valid(approval: Approval | None, level: str, now: datetime) -> bool:
    if approval is None or approval.level != level:
        return False
    try:
        expires = datetime.fromisoformat(approval.expires_at)
    except ValueError:
        return False
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return now < expires


@dataclass(frozen=True)
class KeySpec:
    """Everything a new key's /key/generate needs besides its generation and level."""

    workspace_id: str
    owner: str
    workspace_name: str
    template_name: str
    identity: str
    guardrail_action: str


@dataclass(frozen=True)
class Rotated:
    generation: int
    level: str
    rotated_at: str


async def rotate(
    spec: KeySpec,
    *,
    old_generation: int,
    old_level: str,
    new_level: str,
    reason: str,
    settings: Settings,
    litellm: LiteLLM,
    store: Store,
    revoker: Revoker,
) -> Rotated:
    """Steps 1-4 above; raises LiteLLMError when the new key could not be made (the old key is
    then still live and stored, so the workspace keeps working)."""
    secret = settings.derivation_secret
    generation = old_generation + 1
    old_key = derive_key(secret, spec.workspace_id, old_generation)
    new_key = derive_key(secret, spec.workspace_id, generation)
    at = now_text()
    await litellm.rename(old_key, old_alias(spec.workspace_id, old_generation))
    body = generate_body(
        key=new_key,
        workspace_id=spec.workspace_id,
        owner=spec.owner,
        workspace_name=spec.workspace_name,
        level=new_level,
        guardrail_action=spec.guardrail_action,
        identity=spec.identity,
        generation=generation,
        template_name=spec.template_name,
        **settings.key_limits,
        rotation={"rotated_at": at, "rotated_from_level": old_level, "rotation_reason": reason},
    )
    try:
        await litellm.generate(body)
    except LiteLLMError:
        if await litellm.find(new_key) is None:  # made by an earlier, interrupted rotation?
            raise
    store.rotated(spec.workspace_id, generation, new_level, spec.owner, old_generation, at)
    await revoker.block(Pending(spec.workspace_id, old_generation, "rotated", 0))
    return Rotated(generation, new_level, at)
