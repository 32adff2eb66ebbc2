"""Drift reports as a real agent sends them (the shape of workspace_agent.wire.Report), built fast.

A workspace's report has about as many rules as the agent manages (keys, Roo Code, OpenCode,
settings and extension lockdown). Most reports are heartbeats with nothing changed; a drifting
workspace reports one rule in `drift` with before → after values.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

AGENT_VERSION = "0.1.0"
DESIRED_SHA = "a" * 64
PROMPT_SHA = "b" * 64

RULES: tuple[tuple[str, str], ...] = (
    ("key.file", "~/.config/workspace-agent/litellm.key"),
    ("roo.rules", "~/.roo/rules/00-platform-enforcement.md"),
    ("roo.auto-import-path", "~/.local/share/code-server/User/settings.json"),
    ("roo.import", "~/.config/roo-code/settings.json"),
    ("opencode.enforcement", "~/.config/opencode/enforcement.md"),
    ("opencode.config", "~/.config/opencode/opencode.json"),
    ("opencode.managed", "/etc/opencode/opencode.json"),
    ("vscode.setting.chat.disableAIFeatures", "~/.local/share/code-server/User/settings.json"),
    ("vscode.setting.github.copilot.enable", "~/.local/share/code-server/User/settings.json"),
    ("vscode.setting.extensions.allowed", "~/.local/share/code-server/User/settings.json"),
    ("vscode.setting.telemetry.telemetryLevel", "~/.local/share/code-server/User/settings.json"),
    ("extension.absent.github.copilot", "~/.local/share/code-server/extensions"),
    ("extension.absent.github.copilot-chat", "~/.local/share/code-server/extensions"),
    ("extension.absent.sourcegraph.cody-ai", "~/.local/share/code-server/extensions"),
)
DRIFT_RULE = 7  # vscode.setting.chat.disableAIFeatures: the one a user most likely edits away


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def report(workspace_id: str, *, drifted: bool = False, kind: str = "heartbeat",
           report_id: str | None = None, at: str | None = None) -> dict[str, Any]:
    """One report of `workspace_id`; `drifted` puts one rule in drift (exit code 2, as `check`)."""
    stamp = at or now_iso()
    rules = []
    for index, (rule_id, target) in enumerate(RULES):
        if drifted and index == DRIFT_RULE:
            rules.append({"rule_id": rule_id, "target": target, "state": "drift", "before": "false",
                          "after": "true", "message": None})
        else:
            rules.append({"rule_id": rule_id, "target": target, "state": "compliant", "before": None,
                          "after": None, "message": None})
    return {
        "wire_version": 1,
        "report_id": report_id or uuid.uuid4().hex,
        "kind": kind,
        "workspace": {"id": workspace_id, "name": f"ws-{workspace_id[-6:]}", "owner": f"user{workspace_id[-4:]}"},
        "agent_version": AGENT_VERSION,
        "desired_sha256": DESIRED_SHA,
        "prompt_sha256": PROMPT_SHA,
        "enforcement_level": "standard",
        "key_enforcement_level": "standard",
        "key_source": "provisioner",
        "identity_mode": "enrollment-secret",
        "exit_code": 2 if drifted else 0,
        "started_at": stamp,
        "finished_at": stamp,
        "rules": rules,
        "notes": [],
    }


def body(workspace_id: str, **kw: Any) -> bytes:
    return json.dumps(report(workspace_id, **kw), separators=(",", ":")).encode()


def enroll_body(workspace_id: str) -> bytes:
    return json.dumps({"workspace": {"id": workspace_id, "name": f"ws-{workspace_id[-6:]}",
                                     "owner": f"user{workspace_id[-4:]}"},
                       "agent_version": AGENT_VERSION}).encode()


def workspace_id(index: int, prefix: str = "bench") -> str:
    return f"{prefix}-{index:08d}"
