"""The realistic home the agent benchmarks run on."""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks.home import build_home, settings_json
from workspace_agent import jsonc


def test_settings_json_is_300_lines_of_valid_jsonc_with_comments() -> None:
    text = settings_json()
    assert text.count("\n") == 300
    data = jsonc.loads(text)
    assert len(data) > 150 and data["editor.tabSize"] == 4
    assert text.count("//") > 30 and "/* old */" in text


def test_build_home_makes_extensions_and_old_client_files(tmp_path: Path) -> None:
    made = build_home(tmp_path)
    assert made == {"settings_json_lines": 300, "extensions": 40}
    extensions = tmp_path / ".local/share/code-server/extensions"
    manifest = json.loads((extensions / "extensions.json").read_text())
    folders = [p for p in extensions.iterdir() if p.is_dir()]
    assert len(manifest) == 40 and len(folders) == 40
    for entry in manifest:
        package = json.loads((extensions / entry["relativeLocation"] / "package.json").read_text())
        assert f"{package['publisher']}.{package['name']}" == entry["identifier"]["id"]
    assert "openAiApiKey" in (tmp_path / ".config/roo-code/settings.json").read_text()
    assert (tmp_path / ".config/opencode/opencode.json").is_file()
    assert os.access(tmp_path / ".opencode/bin/opencode", os.X_OK)
