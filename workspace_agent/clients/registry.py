"""The AI clients the agent knows, in the order their rules are applied.

Each module listed in `CLIENT_MODULES` defines `CLIENT` (a `clients.base.Client`). Everything that
used to name clients one by one derives from this list: the `ai_assistant` choices (config), the
rules of a workspace (desired.rules), the tool table of `ai-models`, the policy file's client
tables (policyfile), the settings keys the lockdown must leave alone, and the Coder template's
options (checked by tests/test_dockerfile.py). Adding a client is one module, one line here and
its test; tests/test_clients_contract.py runs over every entry.

Modules are imported on first use, not when this module is imported.
"""

from __future__ import annotations

import importlib
from functools import cache

from workspace_agent.clients.base import Client

CLIENT_MODULES: tuple[str, ...] = (
    "workspace_agent.clients.roo_code",
    "workspace_agent.clients.zoo_code",
    "workspace_agent.clients.opencode",
    "workspace_agent.clients.claude_code",
)
NONE = "none"  # the `ai_assistant` value that configures no client (the lockdown still applies)
DEFAULT = "both"  # the historical default name: the IDE agents and OpenCode


@cache
def clients() -> tuple[Client, ...]:
    """Every registered client, in application order."""
    found: list[Client] = []
    for module_name in CLIENT_MODULES:
        client = getattr(importlib.import_module(module_name), "CLIENT", None)
        if not isinstance(client, Client):
            raise TypeError(f"{module_name} is listed in clients/registry.py but defines no CLIENT")
        found.append(client)
    return tuple(found)


def by_name(name: str) -> Client:
    for client in clients():
        if client.name == name:
            return client
    raise KeyError(name)


def assistant_choices() -> tuple[str, ...]:
    """Every accepted `ai_assistant` value: the groups and single clients, then `none`."""
    seen: dict[str, None] = {}
    for client in clients():
        for choice in client.assistants:
            seen.setdefault(choice, None)
    return (*seen, NONE)


def selected(ai_assistant: str) -> tuple[Client, ...]:
    """The clients an `ai_assistant` value configures (none for `none` or an unknown value)."""
    return tuple(client for client in clients() if ai_assistant in client.assistants)


def choice_title(choice: str) -> str:
    """A choice as the Coder template shows it: its clients' names ("Roo Code and Zoo Code")."""
    titles = [client.title for client in selected(choice)]
    if not titles:
        return "None"
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]


def title(name: str) -> str:
    """A client's display name, or the name itself when it is not registered."""
    try:
        return by_name(name).title
    except KeyError:
        return name


def owned_settings_keys() -> tuple[str, ...]:
    """code-server User settings keys some client manages (the lockdown may not set them)."""
    return tuple(key for client in clients() for key in client.settings_keys)


def template_options() -> str:
    """The `option` blocks of the Coder template's ai_assistant parameter (dockerfile/coder-template.tf
    holds exactly this text; tests/test_dockerfile.py checks it): `python -m workspace_agent.clients.registry`."""
    return "".join(
        f'  option {{\n    name  = "{choice_title(choice)}"\n    value = "{choice}"\n  }}\n' for choice in assistant_choices()
    )


if __name__ == "__main__":  # pragma: no cover
    print(template_options(), end="")
