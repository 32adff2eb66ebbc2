"""Layer 1: the Coder server's own AI switches (`coder.server-env`).

They live in the Coder server's environment, so a workspace cannot set them and, normally, cannot
see them: `GET /api/v2/deployment/config` needs read access to the deployment config (the Owner
and Auditor roles), and the workspace's agent token is not a user token. So the rule says "not
verifiable from a workspace" unless the admin configured `coder_url` and `coder_token`; then
bootstrap reads the deployment config and compares (plan and check make no network calls).
See docs/coder-layer1.md. `evaluate` is pure, so a central checker can reuse it.
"""

from __future__ import annotations

from workspace_agent.errors import AgentError
from workspace_agent.lockdown.spec import EnvRequirement
from workspace_agent.plan import ActionFact, ActionRule
from workspace_agent.record import Record

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

CONFIG_PATH = "/api/v2/deployment/config"
TIMEOUT_S = 5.0
NOT_VERIFIABLE = (
    "not verifiable from a workspace: these are the Coder server's environment (see dockerfile/coder-server-env.yaml); "
    "set coder_url and coder_token (Owner or Auditor role) to check them, see docs/coder-layer1.md"
)


class Seen(Record):
    requirement: EnvRequirement
    actual: str | None  # None: this Coder version does not report it

    @property
    def ok(self) -> bool:
        return self.actual is not None and self.actual == self.requirement.value


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value).strip().lower()
    return None


def _lookup(document: Any, dotted: str) -> Any:
    node = document
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def evaluate(document: Any, requirements: tuple[EnvRequirement, ...]) -> list[Seen]:
    """What a deployment-config response says about each requirement.

    The `options` list (each with its `env` name and `value`) is read first, under every name of
    the option (a renamed option keeps its old name as an alias); a value that differs under any
    name wins, so an alias cannot hide a wrong setting. The typed `config` object is the fallback.
    """
    options = document.get("options") if isinstance(document, dict) else None
    config = document.get("config") if isinstance(document, dict) else None
    seen: list[Seen] = []
    for requirement in requirements:
        found: list[str | None] = [
            _text(option.get("value"))
            for option in (options if isinstance(options, list) else [])
            if isinstance(option, dict) and option.get("env") in requirement.names
        ]
        values = [v for v in found if v is not None]
        if not values:  # the typed config: the first path this version has
            values = [v for v in (_text(_lookup(config, p)) for p in requirement.config_paths) if v is not None][:1]
        wrong = [v for v in values if v != requirement.value]
        seen.append(Seen(requirement, wrong[0] if wrong else (values[0] if values else None)))
    return seen


MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a deployment config is tens of kB


def fetch_config(url: str, token: str, timeout: float = TIMEOUT_S) -> Any:
    """GET the deployment config within `timeout` seconds in all (transport.py)."""
    import json

    from workspace_agent import transport

    problem: str | None = None
    try:
        answer = transport.request(
            "GET", url.rstrip("/") + CONFIG_PATH, timeout=timeout, max_body_bytes=MAX_CONFIG_BYTES,
            headers={"Coder-Session-Token": token, "Accept": "application/json"},
        )
    except transport.TransportError as exc:
        problem = exc.message
    if problem is not None:
        raise AgentError(f"cannot reach Coder at {url}: {problem}")
    if answer.status in (401, 403):
        raise AgentError(
            f"Coder at {url} refused coder_token (HTTP {answer.status}): reading the deployment config "
            "needs a token of a user with the Owner or Auditor role"
        )
    if answer.status != 200:
        raise AgentError(f"Coder at {url} answered HTTP {answer.status} to GET {CONFIG_PATH}")
    if answer.too_large:
        raise AgentError(f"Coder at {url} sent more than {MAX_CONFIG_BYTES // (1024 * 1024)} MB for GET {CONFIG_PATH}")
    try:
        return json.loads(answer.body)
    except (ValueError, RecursionError):
        raise AgentError(f"Coder at {url} did not answer JSON to GET {CONFIG_PATH}") from None


def server_env_rule(requirements: tuple[EnvRequirement, ...], url: str, token: str, *, online: bool) -> ActionRule:
    def observe() -> ActionFact:
        if not url or not token:
            return ActionFact(True, message=NOT_VERIFIABLE)
        if not online:
            return ActionFact(True, message=f"checked against {url} by bootstrap only (plan and check make no network calls)")
        seen = evaluate(fetch_config(url, token), requirements)
        unknown = [s.requirement.name for s in seen if s.actual is None]
        wrong = [s for s in seen if s.actual is not None and not s.ok]
        note = f"{', '.join(unknown)} not reported by this Coder version" if unknown else None
        if not wrong:
            return ActionFact(True, message=note or f"verified with {url}")
        before = ", ".join(f"{s.requirement.name}={s.actual}" for s in wrong)
        after = ", ".join(f"{s.requirement.name}={s.requirement.value}" for s in wrong)
        reasons = "; ".join(f"{s.requirement.name}: {s.requirement.why}" for s in wrong)
        message = f"report only: set it in the Coder server's environment ({reasons})"
        return ActionFact(False, before, after, message="; ".join(m for m in (message, note) if m))

    return ActionRule("coder.server-env", url or "coder-server", observe, None, title="Coder server AI switches")
