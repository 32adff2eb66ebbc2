"""Which generation of a workspace's key is current, when the store may be behind LiteLLM.

The store is the provisioner's own record; LiteLLM is shared. After a lost database, or a
rotation by another replica (each has its own store), the stored generation's key is found
blocked under the alias `workspace-<id>-g<N>`: a completed rotation, so generation N+1 exists.
Following those marks (a bounded walk) keeps a workspace from being refused, or revoked at the
wrong generation, because one provisioner forgot a rotation.
"""

from __future__ import annotations

from key_provisioner.keys import KeyFacts, derive_key
from key_provisioner.litellm import LiteLLM, LiteLLMError

MAX_WALK = 64  # rotations followed beyond what the store knows


async def current(
    litellm: LiteLLM, secret: str, workspace_id: str, generation: int
) -> tuple[int, KeyFacts | None, int]:
    """(the current generation, LiteLLM's facts about its key, how many rotations were followed)."""
    facts = await litellm.find(derive_key(secret, workspace_id, generation))
    steps = 0
    while facts is not None and facts.rotated_out(workspace_id, generation):
        steps += 1
        if steps > MAX_WALK:
            raise LiteLLMError(
                f"more than {MAX_WALK} rotated-out generations of workspace {workspace_id} after "
                f"generation {generation - steps + 1}"
            )
        generation += 1
        facts = await litellm.find(derive_key(secret, workspace_id, generation))
    return generation, facts, steps
