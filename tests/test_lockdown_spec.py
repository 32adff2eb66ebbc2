"""What the lockdown requires: the shipped data, the policy's [lockdown] table, clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from workspace_agent import data
from workspace_agent.config import load_config
from workspace_agent.desired import build_desired
from workspace_agent.errors import AgentError
from workspace_agent.lockdown.spec import build, load

# shared/reference/vscode-lockdown.md, Layer 2 table (the Roo Code key is managed elsewhere).
REFERENCE_TABLE = {
    "chat.agent.enabled": False,
    "chat.commandCenter.enabled": False,
    "chat.disableAIFeatures": True,
    "github.copilot.enable": {"*": False},
    "github.copilot.editor.enableAutoCompletions": False,
    "github.copilot.chat.enabled": False,
    "github.copilot.renameSuggestions.triggerAutomatically": False,
    "inlineChat.mode": "off",
    "editor.inlineSuggest.enabled": False,
    "cody.enabled": False,
    "cody.autocomplete.enabled": False,
    "telemetry.telemetryLevel": "off",
    "workbench.secondarySideBar.defaultVisibility": "hidden",
}


def test_shipped_lockdown_has_the_reference_table_and_a_derived_deny_list() -> None:
    lockdown = load({})
    for key, value in REFERENCE_TABLE.items():
        assert lockdown.settings[key] == value, key
    assert "roo-cline.autoImportSettingsPath" not in lockdown.settings
    assert lockdown.forbidden == ("github.copilot", "github.copilot-chat", "sourcegraph.cody-ai")
    assert lockdown.settings["extensions.allowed"] == {
        "github.copilot": False,
        "github.copilot-chat": False,
        "sourcegraph.cody-ai": False,
        "*": True,
    }
    assert lockdown.settings["chat.mcp.access"] == "none"
    assert lockdown.fix_workspace_overrides is False
    assert [e.name for e in lockdown.coder_env] == [
        "CODER_AIBRIDGE_ENABLED",
        "CODER_HIDE_AI_TASKS",
        "CODER_OAUTH2_GITHUB_DEFAULT_PROVIDER_ENABLE",
    ]
    assert lockdown.coder_env[0].names == ("CODER_AIBRIDGE_ENABLED", "CODER_AI_GATEWAY_ENABLED")


def test_policy_adds_keys_ids_and_the_fix_switch() -> None:
    policy = tomllib.loads(
        """
        [lockdown]
        settings = { "editor.acceptSuggestionOnEnter" = "off", "telemetry.telemetryLevel" = "off", "[python]" = { "editor.inlineSuggest.enabled" = false } }
        forbidden_extensions = ["TabNine.tabnine-vscode", "github.copilot"]
        fix_workspace_overrides = true
        """
    )
    lockdown = load(policy)
    assert lockdown.settings["editor.acceptSuggestionOnEnter"] == "off"
    assert lockdown.settings["[python]"] == {"editor.inlineSuggest.enabled": False}
    assert lockdown.forbidden[-1] == "tabnine.tabnine-vscode"
    assert lockdown.forbidden.count("github.copilot") == 1
    assert lockdown.settings["extensions.allowed"]["tabnine.tabnine-vscode"] is False
    assert lockdown.settings["extensions.allowed"]["*"] is True
    assert lockdown.fix_workspace_overrides is True


@pytest.mark.parametrize(
    ("policy_text", "expected"),
    [
        ("lockdown = 3", "[lockdown] must be a table"),
        ("[lockdown]\nsetting = {}", "unknown key 'setting' in [lockdown]; allowed: settings, forbidden_extensions, fix_workspace_overrides"),
        # An admin who forgets the quotes gets a nested table: said in words, not accepted.
        ("[lockdown.settings]\nchat.agent.enabled = true", "'chat' is not a VS Code setting key; quote dotted keys in TOML"),
        ('[lockdown.settings]\n"extensions.allowed" = {}', "extensions.allowed is built from the forbidden extension ids"),
        ('[lockdown.settings]\n"roo-cline.autoImportSettingsPath" = "/x"', "managed by the Roo Code rules"),
        ('[lockdown.settings]\n"files.when" = 1979-05-27', "is not a JSON value"),
        ('[lockdown]\nforbidden_extensions = "github.copilot"', "must be a list of extension ids"),
        ('[lockdown]\nforbidden_extensions = ["copilot"]', "'copilot' is not an extension id (publisher.name"),
        ('[lockdown]\nfix_workspace_overrides = "yes"', "fix_workspace_overrides='yes' must be true or false"),
    ],
)
def test_bad_policy_is_one_sentence(policy_text: str, expected: str) -> None:
    with pytest.raises(AgentError) as info:
        load(tomllib.loads(policy_text))
    assert expected in info.value.message
    assert "\n" not in info.value.message


def test_shipped_file_errors_name_the_file() -> None:
    with pytest.raises(AgentError, match=r"settings/lockdown.toml \[vscode.settings\]"):
        build({"vscode": {"settings": {"chat": {"agent": False}}}}, {})


def test_policy_lockdown_changes_the_desired_fingerprint(tmp_path: Path) -> None:
    config = load_config({}, {"HOME": str(tmp_path), "LITELLM_API_KEY": "sk-test-1234567890"}, {})
    plain = build_desired(config, {})
    extended = build_desired(config, {"lockdown": {"forbidden_extensions": ["tabnine.tabnine-vscode"]}})
    assert plain.fingerprint() != extended.fingerprint()
    assert plain.fingerprint() == build_desired(config, {}).fingerprint()


def test_lockdown_toml_is_the_only_source() -> None:
    """Nothing locked is repeated in Python: every locked key and id appears in the data file."""
    shipped = data.settings_file("lockdown")
    source = "".join(p.read_text() for p in Path(data.__file__).parent.joinpath("lockdown").glob("*.py"))
    for key in shipped["vscode"]["settings"]:
        assert f'"{key}"' not in source, f"{key} is hard-coded in workspace_agent/lockdown/"
    for ext_id in shipped["extensions"]["forbidden"]:
        assert f'"{ext_id}"' not in source, f"{ext_id} is hard-coded in workspace_agent/lockdown/"
