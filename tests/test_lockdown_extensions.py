"""Layer 3 on temp extensions dirs: forbidden extensions found in every form and removed by file
edits when there is no code-server CLI (the CLI path is tested with the real code-server in
test_lockdown_real.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workspace_agent.errors import AgentError
from workspace_agent.lockdown import extensions, removal
from workspace_agent.plan import apply_plan, build_plan


def add_extension(
    ext_dir: Path,
    folder: str,
    publisher: str,
    name: str,
    version: str = "1.0.0",
    *,
    index: bool = True,
    builtin: bool = False,
) -> Path:
    """An extension as code-server lays it out: a folder with package.json, and its index entry."""
    path = ext_dir / folder
    path.mkdir(parents=True)
    (path / "package.json").write_text(json.dumps({"publisher": publisher, "name": name, "version": version}))
    if index:
        index_path = ext_dir / extensions.INDEX
        items = json.loads(index_path.read_text()) if index_path.exists() else []
        metadata = {"installedTimestamp": 1700000000000, "source": "vsix", **({"isBuiltin": True} if builtin else {})}
        items.append(
            {
                "identifier": {"id": f"{publisher}.{name}"},
                "version": version,
                "location": {"$mid": 1, "path": str(path), "scheme": "file"},
                "relativeLocation": folder,
                "metadata": metadata,
            }
        )
        index_path.write_text(json.dumps(items, separators=(",", ":")))
    return path


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("github.copilot-1.250.0", ("github.copilot", "1.250.0")),
        ("GitHub.copilot-chat-0.22.4", ("github.copilot-chat", "0.22.4")),
        ("ms-python.python-2024.0.1-linux-x64", ("ms-python.python", "2024.0.1-linux-x64")),
        ("sourcegraph.cody-ai-1.2.3-rc.1", ("sourcegraph.cody-ai", "1.2.3-rc.1")),
        ("cody", None),
        ("noversion.here", None),
    ],
)
def test_folder_name_convention(folder: str, expected: tuple[str, str] | None) -> None:
    assert extensions.folder_id(folder) == expected


def test_every_form_of_a_forbidden_extension_is_found(tmp_path: Path) -> None:
    ext = tmp_path / "extensions"
    add_extension(ext, "github.copilot-1.200.0", "GitHub", "copilot", "1.200.0")
    add_extension(ext, "GitHub.Copilot-1.250.0", "github", "COPILOT", "1.250.0", index=False)  # case, no entry
    add_extension(ext, "my-sideload", "github", "copilot", "9.9.9", index=False)  # renamed folder
    add_extension(ext, "github.copilot-chat-0.22.4", "GitHub", "copilot-chat", "0.22.4", builtin=True)
    add_extension(ext, "rooveterinaryinc.roo-cline-3.50.0", "RooVeterinaryInc", "roo-cline", "3.50.0")
    (ext / ".obsolete").write_text("{}")

    copilot = extensions.find(ext, "GitHub.Copilot")
    assert copilot.present
    assert [e.version for e in copilot.entries] == ["1.200.0"]
    assert sorted(f.path.name for f in copilot.folders) == ["GitHub.Copilot-1.250.0", "github.copilot-1.200.0", "my-sideload"]
    assert copilot.describe() == (
        "github.copilot 1.200.0 (extensions.json), GitHub.Copilot-1.250.0/ (folder only), my-sideload/ (folder only)"
    )
    chat = extensions.find(ext, "github.copilot-chat")
    assert chat.entries[0].user_builtin is True
    assert "marked built-in by the user" in chat.describe()
    assert not extensions.find(ext, "sourcegraph.cody-ai").present


def test_entry_without_folder_is_found(tmp_path: Path) -> None:
    ext = tmp_path / "extensions"
    path = add_extension(ext, "sourcegraph.cody-ai-1.0.0", "sourcegraph", "cody-ai")
    (path / "package.json").unlink()
    path.rmdir()
    found = extensions.find(ext, "sourcegraph.cody-ai")
    assert found.present and found.folders == [] and len(found.entries) == 1


def test_broken_index_is_an_error_with_the_next_step(tmp_path: Path) -> None:
    ext = tmp_path / "extensions"
    ext.mkdir()
    (ext / extensions.INDEX).write_text("[{")
    with pytest.raises(AgentError, match="extensions.json is not valid JSON .*remove it and restart code-server"):
        extensions.find(ext, "github.copilot")


def test_rule_removes_every_form_without_the_cli_and_keeps_the_rest(tmp_path: Path) -> None:
    ext = tmp_path / "extensions"
    data_dir = tmp_path / "code-server"
    add_extension(ext, "github.copilot-1.200.0", "GitHub", "copilot", "1.200.0")
    add_extension(ext, "rooveterinaryinc.roo-cline-3.50.0", "RooVeterinaryInc", "roo-cline", "3.50.0")
    add_extension(ext, "GitHub.Copilot-1.250.0", "github", "copilot", "1.250.0", index=False)
    add_extension(ext, "github.copilot-chat-0.22.4", "GitHub", "copilot-chat", "0.22.4", builtin=True)
    outside = tmp_path / "elsewhere" / "copilot-link-target"
    outside.mkdir(parents=True)
    (outside / "package.json").write_text(json.dumps({"publisher": "github", "name": "copilot", "version": "2.0.0"}))
    (ext / "linked").symlink_to(outside, target_is_directory=True)
    roo_entry = next(i for i in json.loads((ext / extensions.INDEX).read_text()) if i["identifier"]["id"].startswith("Roo"))

    rules = [removal.rule(i, ext, data_dir, "") for i in ("github.copilot", "github.copilot-chat", "sourcegraph.cody-ai")]
    plan = build_plan(rules)
    states = {r.rule_id: r.state for r in plan.results}
    assert states == {
        "extension.absent.github.copilot": "drift",
        "extension.absent.github.copilot-chat": "drift",
        "extension.absent.sourcegraph.cody-ai": "compliant",
    }
    assert (ext / "github.copilot-1.200.0").exists(), "planning removes nothing"
    final = {r.rule_id: r for r in apply_plan(plan)}
    assert final["extension.absent.github.copilot"].state == "corrected"
    assert final["extension.absent.github.copilot"].after == "absent"
    assert final["extension.absent.github.copilot-chat"].state == "corrected"
    assert sorted(p.name for p in ext.iterdir()) == [extensions.INDEX, "rooveterinaryinc.roo-cline-3.50.0"]
    assert json.loads((ext / extensions.INDEX).read_text()) == [roo_entry]
    assert (outside / "package.json").exists(), "a linked folder: only the link goes"
    assert {r.state for r in build_plan(rules).results} == {"compliant"}


def test_removal_outside_the_extensions_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="outside"):
        removal.delete_folder(tmp_path / "x" / "github.copilot-1.0.0", tmp_path / "extensions")


def test_unusable_code_server_setting_fails_that_rule_only(tmp_path: Path) -> None:
    ext = tmp_path / "extensions"
    add_extension(ext, "sourcegraph.cody-ai-1.0.0", "sourcegraph", "cody-ai")
    not_executable = tmp_path / "code-server"
    not_executable.write_text("")
    rule = removal.rule("sourcegraph.cody-ai", ext, tmp_path, str(not_executable))
    result = apply_plan(build_plan([rule]))[0]
    assert result.state == "error" and "is not an executable file" in (result.message or "")
    assert (ext / "sourcegraph.cody-ai-1.0.0").exists()


@pytest.mark.codeserver
def test_real_cli_removes_a_user_builtin_extension_and_its_stray_copies(tmp_path: Path) -> None:
    """code-server's own CLI, one id per call, with --force (needed for a user built-in)."""
    import os
    import subprocess
    import zipfile

    from tests.heavy import require

    code_server = require("WA_CODE_SERVER", "code-server 4.139.1 (npm, run with Node 24)")
    data_dir = tmp_path / "code-server"
    ext = data_dir / "extensions"
    vsix = tmp_path / "cody.vsix"
    with zipfile.ZipFile(vsix, "w") as archive:
        manifest = {"name": "cody-ai", "publisher": "sourcegraph", "version": "1.2.0", "engines": {"vscode": "^1.80.0"}}
        archive.writestr("extension/package.json", json.dumps(manifest))
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    installed = subprocess.run(
        [code_server, "--install-extension", str(vsix), "--extensions-dir", str(ext), "--user-data-dir", str(data_dir)],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    index = json.loads((ext / extensions.INDEX).read_text())
    index[0]["metadata"]["isBuiltin"] = True  # as `--install-extension … ` marks a user built-in
    (ext / extensions.INDEX).write_text(json.dumps(index))
    add_extension(ext, "SourceGraph.Cody-AI-1.1.0", "sourcegraph", "cody-ai", "1.1.0", index=False)

    rule = removal.rule("sourcegraph.cody-ai", ext, data_dir, code_server)
    plan = build_plan([rule])
    assert "marked built-in by the user" in (plan.results[0].before or "")
    assert apply_plan(plan)[0].state == "corrected"
    assert json.loads((ext / extensions.INDEX).read_text()) == []
    assert sorted(p.name for p in ext.iterdir()) == [".obsolete", extensions.INDEX], "the CLI's own bookkeeping stays"
    assert build_plan([rule]).results[0].state == "compliant"
