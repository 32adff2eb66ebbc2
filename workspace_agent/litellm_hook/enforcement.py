"""The LiteLLM `CustomLogger` that enforces a key's level on every request it can carry it in.

Load it from the proxy's config (`litellm_settings.callbacks`) as
`workspace_agent.litellm_hook.enforcement.handler`. Two hooks:

* `async_pre_call_hook`: reads `enforcement_level` from the key's metadata, prepends that level's
  prompt (see `policy`), and remembers the decision for this call;
* `async_post_call_response_headers_hook`: tells the client what was applied, in the response
  header `x-workspace-enforcement: <level>; sha256=<hex of the prompt bytes>`, which
  `ai-models --check` compares with the prompt the workspace ships.

A prompt that cannot be read refuses the request (HTTP 500 with the reason): a broken gateway
install must not quietly let requests through unenforced.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from workspace_agent.litellm_hook.policy import HEADER, Decision, PromptStore, decide, log, prepend

_REMEMBERED_CALLS = 4096  # decisions kept for the header hook (calls whose answer is still to come)


class EnforcementHook(CustomLogger):
    """Prepends the key's enforcement prompt; marks responses with what it applied."""

    def __init__(self, store: PromptStore | None = None) -> None:
        super().__init__()
        self.store = store or PromptStore()
        self._decisions: OrderedDict[str, str] = OrderedDict()
        self._unknown_seen: set[str] = set()

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any) -> dict:
        metadata = getattr(user_api_key_dict, "metadata", None) or {}
        decision = decide(metadata, self.store)
        if decision.fallback:
            self._log_fallback(decision, user_api_key_dict)
        applied = prepend(data, str(getattr(call_type, "value", call_type)), decision.prompt)
        call_id = data.get("litellm_call_id")
        if isinstance(call_id, str) and (applied or not decision.prompt):
            self._remember(call_id, decision)
        return data

    async def async_post_call_response_headers_hook(
        self,
        data: dict,
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, object] | None = None,
    ) -> dict[str, str] | None:
        call_id = data.get("litellm_call_id") if isinstance(data, dict) else None
        value = self._decisions.pop(call_id, None) if isinstance(call_id, str) else None
        return {HEADER: value} if value is not None else None

    def _remember(self, call_id: str, decision: Decision) -> None:
        self._decisions[call_id] = decision.header()
        while len(self._decisions) > _REMEMBERED_CALLS:
            self._decisions.popitem(last=False)

    def _log_fallback(self, decision: Decision, key: Any) -> None:
        requested = decision.requested or "missing"
        alias = getattr(key, "key_alias", None) or getattr(key, "user_id", None) or "a key"
        if requested not in self._unknown_seen:  # once per value: a busy gateway must not flood its log
            if len(self._unknown_seen) < 256:
                self._unknown_seen.add(requested)
            log.warning(
                "enforcement_level %s on %s is not one of unrestricted, standard, design-first: "
                "applying %s",
                requested,
                alias,
                decision.level,
            )


handler = EnforcementHook()
