"""Inputs + shipped data (prompts/, settings/) + policy → the desired state of one workspace.

`Desired` is plain data; `rules()` turns it into the list of small resources that `plan` observes
and `apply` fixes. The key is passed separately because bootstrap fetches it while plan/check
only read the stored one.
"""

from __future__ import annotations

import json

from workspace_agent import data
from workspace_agent.config import AgentConfig
from workspace_agent.digest import sha256_hex
from workspace_agent.errors import AgentError
from workspace_agent.keysource import KeyResolution
from workspace_agent.lockdown.spec import Lockdown
from workspace_agent.lockdown.spec import load as load_lockdown
from workspace_agent.paths import Paths
from workspace_agent.plan import Rule
from workspace_agent.record import Record
from workspace_agent.review import ReviewWorkflow

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any


class ModelChoice(Record):
    template: str  # the template parameter value, e.g. claude-sonnet
    litellm: str  # the LiteLLM model name, e.g. claude-sonnet-4-5
    name: str  # display name


class Desired(Record):
    config: AgentConfig
    paths: Paths
    model: ModelChoice
    small_model: ModelChoice
    models: tuple[ModelChoice, ...]
    prompt: str
    clients: dict[str, Any]
    policy: dict[str, Any]
    reviews: tuple[ReviewWorkflow, ...] = ()  # prompts/review/: the same review workflows in every client
    lockdown: Lockdown | None = None  # None: built from `policy` when the rules are made

    @property
    def gateway_v1(self) -> str:
        return self.config.gateway_url + "/v1"

    @property
    def prompt_sha256(self) -> str:
        return sha256_hex(self.prompt.encode("utf-8"))

    def fingerprint(self) -> str:
        """A hash of everything that defines the desired state (not the key): drift reports carry it."""
        material = {
            "level": self.config.enforcement_level,
            "assistant": self.config.ai_assistant,
            "gateway": self.config.gateway_url,
            "model": self.model.litellm,
            "prompt": self.prompt_sha256,
            "clients": self.clients,
            "policy": self.policy,
            "reviews": [r._asdict() for r in self.reviews],
            "lockdown": (self.lockdown or load_lockdown(self.policy)).as_data(),
        }
        return sha256_hex(json.dumps(material, sort_keys=True, default=str).encode())


def model_table(policy: dict[str, Any]) -> tuple[dict[str, ModelChoice], str, str]:
    """settings/models.toml with the policy's [models] table layered on top."""
    shipped = data.settings_file("models")
    table = {**shipped.get("models", {}), **policy.get("models", {}).get("models", {})}
    choices = {
        template: ModelChoice(template, str(entry["litellm"]), str(entry.get("name", entry["litellm"])))
        for template, entry in table.items()
    }
    default = policy.get("models", {}).get("default", shipped.get("default", "claude-sonnet"))
    small = policy.get("models", {}).get("small", shipped.get("small", default))
    return choices, default, small


def resolve_model(value: str, choices: dict[str, ModelChoice]) -> ModelChoice:
    """A template value (claude-sonnet) or a LiteLLM name (claude-sonnet-4-5) → the choice."""
    if value in choices:
        return choices[value]
    for choice in choices.values():
        if value == choice.litellm:
            return choice
    allowed = ", ".join(sorted(choices))
    raise AgentError(f"AI_MODEL={value!r} is not a known model: choose one of {allowed} (settings/models.toml)")


def build_desired(config: AgentConfig, policy: dict[str, Any], paths: Paths | None = None) -> Desired:
    from workspace_agent import review

    choices, _default, small = model_table(policy)
    clients = data.settings_file("clients")
    return Desired(
        config=config,
        paths=paths or Paths.for_home(config.home),
        model=resolve_model(config.model, choices),
        small_model=resolve_model(small, choices),
        models=tuple(choices.values()),
        prompt=data.prompt_text(config.enforcement_level),
        clients=clients,
        policy=policy,
        reviews=review.load(),
        lockdown=load_lockdown(policy),
    )


def rules(desired: Desired, key: KeyResolution, *, online: bool = False) -> list[Rule]:
    """Every managed resource of this workspace, in the order they are applied.

    `online`: the rules may use the network (bootstrap); plan and check never do.
    """
    from workspace_agent import keylevel, lockdown
    from workspace_agent.clients import bypass, keyfile, registry, shell

    found: list[Rule] = []
    wanted = registry.selected(desired.config.ai_assistant)
    if wanted:
        found += keyfile.rules(desired, key)
    found += keylevel.rules(desired, key)  # report-only; present once `report` learned the key's level
    for client in wanted:
        found += client.rules(desired, key)
    found += shell.rules(desired, key)  # also with `none`: an old plaintext key must still go
    found += lockdown.rules(desired, online=online)  # whatever ai_assistant is, `none` included
    found += bypass.rules(desired, key)  # report-only: provider keys around the gateway
    return unique_rules(found)


def unique_rules(found: list[Rule]) -> list[Rule]:
    """Each rule once: clients may share a resource (Roo Code and Zoo Code both read ~/.roo/rules)
    and declare it with the same id; the first declaration is kept."""
    seen: dict[str, Rule] = {}
    for rule in found:
        first = seen.setdefault(rule.rule_id, rule)
        if first is not rule and _target(first) != _target(rule):
            raise AgentError(f"internal error: rule {rule.rule_id} is declared for {_target(first)} and {_target(rule)}")
    return list(seen.values())


def _target(rule: Rule) -> str:
    return str(getattr(rule, "path", None) or getattr(rule, "target", ""))
