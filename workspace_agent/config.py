"""Inputs: CLI flags > environment > admin policy file (TOML) > defaults, validated once.

Every setting is declared once in `SETTINGS` (its flag, environment variable, policy key and
default), so the CLI options, the precedence rule and the error messages cannot disagree. A bad
value becomes one sentence naming where it came from, the value and what is allowed.

Validation is plain typed functions, not pydantic: this runs on every scheduled `check`, and
importing pydantic and building one model costs ~75 ms of CPU here, 2.5× Python's own start-up.
pydantic stays where data crosses the network (wire.py, the drift server).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from workspace_agent.errors import AgentError
from workspace_agent.record import Record

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any, Literal
    EnforcementLevel = Literal["unrestricted", "standard", "design-first"]
    GuardrailAction = Literal["block", "mask"]

DEFAULT_POLICY_PATH = Path("/etc/workspace-agent/policy.toml")
POLICY_ENV = "WORKSPACE_AGENT_POLICY"

AiAssistant = str  # one of clients.registry.assistant_choices(): each client module declares its own

ENFORCEMENT_LEVELS: tuple[str, ...] = ("unrestricted", "standard", "design-first")  # EnforcementLevel's values
GUARDRAIL_ACTIONS: tuple[str, ...] = ("block", "mask")  # GuardrailAction's values


class Setting(Record):
    """One input: where it may come from and what it means (the help text)."""

    name: str  # field name == policy file key
    env: str | None
    help: str
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("home", "HOME", "home directory of the workspace user"),
    Setting("workspace_id", "CODER_WORKSPACE_ID", "Coder workspace id (data.coder_workspace.me.id)"),
    Setting("workspace_name", "CODER_WORKSPACE_NAME", "Coder workspace name"),
    Setting("owner", "CODER_WORKSPACE_OWNER", "workspace owner's user name"),
    Setting("gateway_url", "AI_GATEWAY_URL", "LiteLLM proxy base URL"),
    Setting("provisioner_url", "PROVISIONER_URL", "key provisioner base URL"),
    Setting("provisioner_secret", "PROVISIONER_SECRET", "bearer secret of the key provisioner", True),
    Setting("api_key", "LITELLM_API_KEY", "a virtual key pasted by hand (skips the provisioner)", True),
    Setting("model", "AI_MODEL", "template model value (see settings/models.toml)"),
    Setting("ai_assistant", "AI_ASSISTANT", "which AI clients to configure"),
    Setting("enforcement_level", "ENFORCEMENT_LEVEL", "enforcement instructions to apply"),
    Setting("guardrail_action", "GUARDRAIL_ACTION", "LiteLLM guardrail action requested for the key"),
    Setting("provision_deadline", "WORKSPACE_AGENT_PROVISION_DEADLINE", "seconds to keep retrying the provisioner"),
    Setting("managed_dir", "WORKSPACE_AGENT_MANAGED_DIR", "root-owned OpenCode managed config dir (used when writable)"),
    Setting("drift_server_url", "DRIFT_SERVER_URL", "drift server base URL (used by `report` and --report)"),
    Setting("enrollment_secret", "DRIFT_ENROLLMENT_SECRET", "the drift server's shared enrollment secret", True),
    Setting(
        "agent_token",
        "CODER_AGENT_TOKEN",
        "this workspace's Coder agent token: proves the workspace to the key provisioner and the drift server",
        True,
    ),
    Setting(
        "claude_managed_dir",
        "WORKSPACE_AGENT_CLAUDE_MANAGED_DIR",
        "root-owned Claude Code managed settings dir (used when writable, else ~/.claude)",
    ),
    Setting("project_roots", "WORKSPACE_AGENT_PROJECT_ROOTS", "where repositories live, ':'-separated (default ~): their .vscode/settings.json and *.code-workspace are audited"),
    Setting("code_server_bin", "WORKSPACE_AGENT_CODE_SERVER_BIN", "code-server executable (default: code-server on PATH)"),
    Setting("coder_url", "WORKSPACE_AGENT_CODER_URL", "Coder URL, to verify the Coder server's AI settings (optional)"),
    Setting("coder_token", "WORKSPACE_AGENT_CODER_TOKEN", "Coder token with the Owner or Auditor role, for coder_url", True),
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
_SHOWN = frozenset(s.name for s in SETTINGS if not s.secret)  # AgentConfig's repr hides the rest


class AgentConfig(Record):
    """The validated inputs of one run (build it with `load_config`)."""

    home: Path
    workspace_id: str = ""
    workspace_name: str = ""
    owner: str = ""
    gateway_url: str = "http://litellm:4000"
    provisioner_url: str = "http://key-provisioner:8100"
    provisioner_secret: str = ""
    api_key: str = ""
    model: str = "claude-sonnet"
    ai_assistant: AiAssistant = "both"
    enforcement_level: EnforcementLevel = "standard"
    guardrail_action: GuardrailAction = "block"
    provision_deadline: float = 60.0
    managed_dir: Path = Path("/etc/opencode")
    drift_server_url: str = ""  # empty: no drift server; reporting then says what to set
    enrollment_secret: str = ""
    agent_token: str = ""  # CODER_AGENT_TOKEN: identity, never shown
    claude_managed_dir: Path = Path("/etc/claude-code")
    project_roots: str = ""
    code_server_bin: str = ""
    coder_url: str = ""
    coder_token: str = ""

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be shown."""
        values = (self.api_key, self.provisioner_secret, self.enrollment_secret, self.agent_token, self.coder_token)
        return tuple(s for s in values if s)

    def __repr__(self) -> str:
        """Secret settings are never shown, not even in a traceback's locals."""
        shown = ", ".join(f"{name}={repr(value) if name in _SHOWN else '<hidden>'}"
                          for name, value in zip(self._fields, self))
        return f"AgentConfig({shown})"

    def wants(self, client: str) -> bool:
        """Whether `ai_assistant` asks for this client (a name in clients/registry.py)."""
        from workspace_agent.clients.registry import selected

        return any(c.name == client for c in selected(self.ai_assistant))


class _Invalid(ValueError):
    """A value that is not acceptable; the text says what is allowed."""


def _choice(allowed: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise _Invalid("choose one of " + ", ".join(allowed[:-1]) + " or " + allowed[-1])
        return str(value)

    return check


def _assistant(value: Any) -> str:
    """The choices come from the client registry (imported here, not at module import)."""
    from workspace_agent.clients.registry import assistant_choices

    return _choice(assistant_choices())(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("must be a string")
    return value


def _http_url(value: Any) -> str:
    value = _text(value)
    if not value.startswith(("http://", "https://")) or len(value) < 10 or any(c.isspace() for c in value):
        raise _Invalid("must be an http:// or https:// URL")
    return value.rstrip("/")


def _optional_http_url(value: Any) -> str:
    value = _text(value).strip()
    return _http_url(value) if value else ""


def _token(value: Any) -> str:
    value = _text(value).strip()
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise _Invalid("must not contain spaces or control characters")
    return value


def _absolute_path(value: Any) -> Path:
    path = Path(_text(value)) if not isinstance(value, Path) else value
    if not path.is_absolute():
        raise _Invalid("must be an absolute path")
    return path


def _seconds(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Invalid("must be a number of seconds") from None
    if not 0 < number <= 3600:
        raise _Invalid("must be more than 0 and at most 3600 seconds")
    return number


# How each setting is checked and converted (the type annotations above say the same).
VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "home": _absolute_path,
    "workspace_id": _text,
    "workspace_name": _text,
    "owner": _text,
    "gateway_url": _http_url,
    "provisioner_url": _http_url,
    "provisioner_secret": _token,
    "api_key": _token,
    "model": _text,
    "ai_assistant": _assistant,
    "enforcement_level": _choice(ENFORCEMENT_LEVELS),
    "guardrail_action": _choice(GUARDRAIL_ACTIONS),
    "provision_deadline": _seconds,
    "managed_dir": _absolute_path,
    "drift_server_url": _optional_http_url,
    "enrollment_secret": _token,
    "agent_token": _token,
    "claude_managed_dir": _absolute_path,
    "project_roots": _text,  # split and checked against the home in lockdown/overrides.py
    "code_server_bin": _text,
    "coder_url": _optional_http_url,
    "coder_token": _token,
}


def policy_path(flag_value: str | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """Where the policy file is, and whether it was asked for explicitly (then it must exist)."""
    if flag_value:
        return Path(flag_value), True
    if environ.get(POLICY_ENV):
        return Path(environ[POLICY_ENV]), True
    return DEFAULT_POLICY_PATH, False


def read_policy(path: Path, required: bool) -> dict[str, Any]:
    """The admin policy file as plain data ({} when the default file is absent)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise AgentError(f"policy file {path} does not exist: fix --policy or {POLICY_ENV}")
        return {}
    except OSError as exc:
        raise AgentError(f"cannot read policy file {path}: {exc.strerror}")
    if not text.strip():
        return {}  # an empty policy (the usual case) needs no TOML parser
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AgentError(f"policy file {path} is not valid TOML: {exc}")


def load_config(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    policy: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Merge the sources by precedence and validate; raise AgentError naming the bad setting."""
    environ = os.environ if environ is None else environ
    policy = policy or {}
    agent_policy = policy.get("agent", {})
    if not isinstance(agent_policy, dict):
        raise AgentError("policy file: [agent] must be a table")
    unknown = sorted(set(agent_policy) - set(SETTINGS_BY_NAME))
    if unknown:
        allowed = ", ".join(sorted(SETTINGS_BY_NAME))
        raise AgentError(f"policy file: unknown setting {unknown[0]!r} in [agent]; allowed: {allowed}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        flag_value = flags.get(setting.name)
        env_value = environ.get(setting.env) if setting.env else None
        if flag_value not in (None, ""):
            values[setting.name], sources[setting.name] = flag_value, setting.flag
        elif env_value not in (None, ""):
            values[setting.name], sources[setting.name] = env_value, f"${setting.env}"
        elif setting.name in agent_policy:
            values[setting.name] = agent_policy[setting.name]
            sources[setting.name] = f"policy [agent].{setting.name}"
    if "home" not in values:
        values["home"] = str(Path.home())
        sources["home"] = "the current user's home"
    checked: dict[str, Any] = {}
    for name, value in values.items():
        try:
            checked[name] = VALIDATORS.get(name, _text)(value)
        except _Invalid as exc:
            setting = SETTINGS_BY_NAME[name]
            shown = "(hidden)" if setting.secret else repr(value)
            verb = "is not allowed" if str(exc).startswith("choose") else "is not valid"
            raise AgentError(f"{sources[name]}={shown} {verb} for {name}: {exc}") from None
    return AgentConfig(**checked)
