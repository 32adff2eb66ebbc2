"""Finding the code-server installation from its binary, and its built-in Copilot Chat."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.heavy import require
from workspace_agent.lockdown import codeserver
from workspace_agent.plan import apply_plan, build_plan


def executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def installation_tree(root: Path, *, copilot: bool = True) -> Path:
    """The layout of the deb/rpm/tarball and the codercom/code-server image: root/{bin,lib/vscode}."""
    (root / "lib" / "vscode" / "extensions" / "git").mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": "code-server", "version": "4.139.1"}))
    if copilot:
        chat = root / "lib" / "vscode" / "extensions" / "copilot"
        chat.mkdir()
        (chat / "package.json").write_text(json.dumps({"publisher": "GitHub", "name": "copilot-chat", "version": "0.67.0"}))
    return executable(root / "bin" / "code-server")


def test_deb_layout_through_the_usr_bin_symlink(tmp_path: Path) -> None:
    real = installation_tree(tmp_path / "usr" / "lib" / "code-server")
    link = tmp_path / "usr" / "bin" / "code-server"
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(real, link.parent))
    assert codeserver.installation(link) == tmp_path / "usr" / "lib" / "code-server"


def test_npm_wrapper_script_names_the_installation(tmp_path: Path) -> None:
    package = tmp_path / "npm" / "lib" / "node_modules" / "code-server"
    installation_tree(package)
    wrapper = executable(
        tmp_path / "elsewhere" / "code-server",
        f'#!/bin/sh\nexec "/opt/node/bin/node" "{package}/out/node/entry.js" "$@"\n',
    )
    assert codeserver.installation(wrapper) == package


def test_builtin_copilot_is_reported_not_touched(tmp_path: Path) -> None:
    binary = installation_tree(tmp_path / "cs")
    plan = build_plan([codeserver.builtin_copilot_rule(str(binary))])
    result = plan.results[0]
    assert result.state == "drift"
    assert result.before == f"built-in GitHub.copilot-chat 0.67.0 in {tmp_path}/cs/lib/vscode/extensions/copilot (code-server 4.139.1)"
    assert "report only" in (result.message or "") and "dockerfile/Dockerfile" in (result.message or "")
    assert apply_plan(plan)[0].state == "drift", "bootstrap does not change the installation"
    assert (tmp_path / "cs" / "lib" / "vscode" / "extensions" / "copilot").is_dir()


def test_installation_without_builtin_copilot_is_compliant(tmp_path: Path) -> None:
    binary = installation_tree(tmp_path / "cs", copilot=False)
    assert build_plan([codeserver.builtin_copilot_rule(str(binary))]).results[0].state == "compliant"


def test_found_on_path_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = installation_tree(tmp_path / "cs")
    monkeypatch.setenv("PATH", f"{binary.parent}{os.pathsep}{os.environ['PATH']}")
    assert codeserver.find_binary("") == binary
    assert build_plan([codeserver.builtin_copilot_rule("")]).results[0].state == "drift"


def test_not_installed_is_said_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = build_plan([codeserver.builtin_copilot_rule("")]).results[0]
    assert result.state == "compliant" and "not on PATH" in (result.message or "")


def test_unknown_layout_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    binary = executable(tmp_path / "bin" / "code-server")
    result = build_plan([codeserver.builtin_copilot_rule(str(binary))]).results[0]
    assert result.state == "error" and "set code_server_bin" in (result.message or "")


@pytest.mark.codeserver
def test_real_code_server_ships_the_builtin_copilot_chat() -> None:
    binary = require("WA_CODE_SERVER", "code-server 4.139.1 (npm, with Node 24)")
    root = codeserver.installation(Path(binary))
    assert root is not None and (root / "lib" / "vscode").is_dir()
    result = build_plan([codeserver.builtin_copilot_rule(binary)]).results[0]
    assert result.state == "drift"
    assert "built-in GitHub.copilot-chat" in (result.before or "") and "(code-server 4.139.1)" in (result.before or "")
    assert f"the Agent Host's Copilot runtime: {root}/lib/vscode/node_modules/@github/copilot-sdk" in (result.before or "")
