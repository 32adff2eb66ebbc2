"""Where every managed file lives, derived from one home directory (and XDG variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from workspace_agent.record import Record


class Paths(Record):
    """All locations the agent reads or writes for one workspace user."""

    home: Path
    config_home: Path
    data_home: Path
    state_home: Path

    @classmethod
    def for_home(cls, home: Path, environ: Mapping[str, str] | None = None) -> Paths:
        """XDG variables win when set (and absolute), as the clients themselves do."""
        environ = os.environ if environ is None else environ

        def xdg(var: str, default: str) -> Path:
            value = environ.get(var, "")
            return Path(value) if value.startswith("/") else home / default

        return cls(
            home=home,
            config_home=xdg("XDG_CONFIG_HOME", ".config"),
            data_home=xdg("XDG_DATA_HOME", ".local/share"),
            state_home=xdg("XDG_STATE_HOME", ".local/state"),
        )

    # The agent's own files.
    @property
    def agent_config_dir(self) -> Path:
        return self.config_home / "workspace-agent"

    @property
    def key_file(self) -> Path:
        return self.agent_config_dir / "litellm.key"

    @property
    def state_dir(self) -> Path:
        return self.state_home / "workspace-agent"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "lock"

    @property
    def last_run_file(self) -> Path:
        return self.state_dir / "last-run.json"

    # Drift reporting (token is a secret: config dir, 0600; the rest is state).
    @property
    def drift_token_file(self) -> Path:
        return self.agent_config_dir / "drift-token.json"

    @property
    def report_dir(self) -> Path:
        return self.state_dir / "report"

    @property
    def report_state_file(self) -> Path:
        return self.report_dir / "state.json"

    @property
    def report_lock_file(self) -> Path:
        return self.report_dir / "lock"

    @property
    def spool_dir(self) -> Path:
        return self.report_dir / "spool"

    @property
    def key_level_file(self) -> Path:
        return self.state_dir / "key-level.json"

    # Roo Code.
    @property
    def roo_import_file(self) -> Path:
        return self.config_home / "roo-code" / "settings.json"

    @property
    def roo_rule_file(self) -> Path:
        return self.home / ".roo" / "rules" / "00-platform-enforcement.md"

    # OpenCode.
    @property
    def opencode_dir(self) -> Path:
        return self.config_home / "opencode"

    @property
    def opencode_config(self) -> Path:
        return self.opencode_dir / "opencode.json"

    @property
    def opencode_enforcement(self) -> Path:
        return self.opencode_dir / "enforcement.md"

    # code-server.
    @property
    def code_server_dir(self) -> Path:
        return self.data_home / "code-server"

    @property
    def user_settings(self) -> Path:
        return self.code_server_dir / "User" / "settings.json"

    @property
    def machine_settings(self) -> Path:
        return self.code_server_dir / "Machine" / "settings.json"

    @property
    def extensions_dir(self) -> Path:
        return self.code_server_dir / "extensions"

    # Shells (the agent owns the env file; the rc files get one marked line).
    @property
    def shell_env_file(self) -> Path:
        return self.agent_config_dir / "shell-env.sh"

    @property
    def fish_env_file(self) -> Path:
        return self.config_home / "fish" / "conf.d" / "workspace-agent.fish"

    @property
    def bash_completion_file(self) -> Path:
        return self.data_home / "bash-completion" / "completions" / "workspace-agent"

    @property
    def fish_completion_file(self) -> Path:
        return self.config_home / "fish" / "completions" / "workspace-agent.fish"

    # Claude Code (user scope; the managed scope is config.claude_managed_dir).
    @property
    def claude_dir(self) -> Path:
        return self.home / ".claude"

    @property
    def claude_settings(self) -> Path:
        return self.claude_dir / "settings.json"

    @property
    def claude_rule_file(self) -> Path:
        return self.claude_dir / "rules" / "00-platform-enforcement.md"

    def show(self, path: Path) -> str:
        """A path as a person reads it: `~/…` inside the home."""
        try:
            return "~/" + str(path.relative_to(self.home))
        except ValueError:
            return str(path)
