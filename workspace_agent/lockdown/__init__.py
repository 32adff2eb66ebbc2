"""The three-layer lockdown of Copilot, Cody and Coder AI Bridge, as rules.

Layer 1 (`coder.py`): the Coder server's AI switches, shipped as a compose/Helm snippet and
checked when a Coder token allows. Layer 2 (`settings.py`): the locked VS Code keys in the User
settings and the places that override them. Layer 3 (`removal.py`, `codeserver.py`): forbidden
extensions removed, code-server's built-in Copilot Chat reported (or deleted, when the policy says so
and the installation may be written). What is locked is data
(settings/lockdown.toml + the policy's [lockdown] table, `spec.py`). Applies whatever
`ai_assistant` is, `none` included.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True

from workspace_agent.lockdown import coder, codeserver, extensions, overrides, removal, settings
from workspace_agent.lockdown.spec import Lockdown, load
from workspace_agent.plan import Rule

if TYPE_CHECKING:
    from workspace_agent.desired import Desired

__all__ = ["Lockdown", "load", "rules"]


def rules(desired: Desired, *, online: bool = False) -> list[Rule]:
    """Every lockdown rule: settings first, then extensions, then the installation and Coder."""
    lockdown = desired.lockdown if desired.lockdown is not None else load(desired.policy)
    config = desired.config
    return [*local_rules(desired),
            coder.server_env_rule(lockdown.coder_env, config.coder_url, config.coder_token, online=online)]


def local_rules(desired: Desired) -> list[Rule]:
    """The rules that need neither the key nor the network: bootstrap applies them first."""
    config = desired.config
    paths = desired.paths
    lockdown = desired.lockdown if desired.lockdown is not None else load(desired.policy)
    roots = overrides.project_roots(config.project_roots, config.home)
    found: list[Rule] = settings.rules(lockdown, paths, roots)
    survey = extensions.Survey(paths.extensions_dir)
    found += [removal.rule(ext_id, paths.extensions_dir, paths.code_server_dir, config.code_server_bin, survey)
              for ext_id in lockdown.forbidden]
    found.append(codeserver.builtin_copilot_rule(config.code_server_bin, remove=lockdown.remove_builtin_copilot))
    return found
