"""Roo Code: the auto-import file (holds the key, 0600), the settings key that points at it, and
the enforcement text as a global rule file (survives a user clearing customInstructions).

The import file also carries the review workflows of prompts/review/ as global custom modes
(`globalSettings.customModes`: Roo Code's import saves each one with its CustomModesManager); the
global customInstructions and ~/.roo/rules/ apply to every mode, so the enforcement level stays on
top of them."""

from __future__ import annotations

import json
from pathlib import Path

from workspace_agent.clients.base import Client

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:  # pragma: no cover
    from workspace_agent.desired import Desired
    from workspace_agent.keysource import KeyResolution
    from workspace_agent.plan import Rule
    from workspace_agent.review import ReviewWorkflow

SETTINGS_KEY = "roo-cline.autoImportSettingsPath"
PROFILE_NAME = "litellm"
PROFILE_ID = "litellm-default"
# A review reads code and may run commands (git diff, tests; the allowed/denied lists apply); it
# does not edit files.
REVIEW_GROUPS = ["read", "command"]


def review_mode(workflow: ReviewWorkflow) -> dict[str, Any]:
    """One review workflow as a Roo Code custom mode (modeConfigSchema of @roo-code/types)."""
    return {
        "slug": workflow.slug,
        "name": workflow.name,
        "roleDefinition": workflow.role,
        "whenToUse": workflow.when_to_use,
        "description": workflow.description,
        "customInstructions": workflow.instructions,
        "groups": list(REVIEW_GROUPS),
        "source": "global",
    }


def import_document(desired: Desired, key: str) -> dict[str, Any]:
    """The file Roo Code imports at every activation (validated by @roo-code/types' schemas)."""
    roo = desired.clients["roo_code"]
    return {
        "providerProfiles": {
            "currentApiConfigName": PROFILE_NAME,
            "apiConfigs": {
                PROFILE_NAME: {
                    "id": PROFILE_ID,
                    "apiProvider": "openai",
                    "openAiBaseUrl": desired.gateway_v1,
                    "openAiApiKey": key,
                    "openAiModelId": desired.model.litellm,
                    "openAiStreamingEnabled": True,
                }
            },
            "modeApiConfigs": {mode: PROFILE_ID for mode in [*roo["modes"], *(w.slug for w in desired.reviews)]},
        },
        "globalSettings": {
            "customInstructions": desired.prompt,
            "telemetrySetting": roo["telemetry"],
            "allowedCommands": list(roo["allowed_commands"]),
            "deniedCommands": list(roo["denied_commands"]),
            "customModes": [review_mode(w) for w in desired.reviews],
        },
    }


def import_text(desired: Desired, key: str) -> str:
    return json.dumps(import_document(desired, key), indent=2, ensure_ascii=False) + "\n"


def legacy_rule_file(desired: Desired) -> Rule:
    """~/.roo/rules/: read by Roo Code, and by Zoo Code (3.80 only there; 3.82 when ~/.zoo/rules is
    absent). One rule id, so a workspace with both clients has it once."""
    from workspace_agent.resources import generated_file

    return generated_file("roo.rules", desired.paths.roo_rule_file, desired.prompt, title="enforcement rule file")


def rules(desired: Desired, key: KeyResolution) -> list[Rule]:
    from workspace_agent.resources import generated_file, json_key

    paths = desired.paths
    found: list[Rule] = [
        legacy_rule_file(desired),
        json_key("roo.auto-import-path", paths.user_settings, SETTINGS_KEY, str(paths.roo_import_file)),
    ]
    if key.key is not None:
        text = import_text(desired, key.key)
        found.append(generated_file("roo.import", paths.roo_import_file, text, mode=0o600, secret=True, title="import file"))
    return found


def models(desired: Desired) -> list[tuple[str, str]]:
    return [("model", desired.model.litellm)]  # every mode's profile is the one LiteLLM profile


def paths(desired: Desired) -> tuple[Path, ...]:
    p = desired.paths
    return (p.roo_rule_file, p.user_settings, p.roo_import_file)


CLIENT = Client(
    name="roo-code",
    title="Roo Code",
    assistants=("both", "all", "roo-code"),
    rules=rules,
    models=models,
    paths=paths,
    settings_keys=(SETTINGS_KEY,),
)
