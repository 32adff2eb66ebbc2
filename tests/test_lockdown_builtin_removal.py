"""Layer 3 at run time: `[lockdown].remove_builtin_copilot` deletes code-server's built-in Copilot
Chat and the Copilot runtime where the agent may write the installation, and otherwise says what
remains and why. The "may not" and "owned by the user" cases run as a real unprivileged user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.heavy import require
from tests.test_lockdown_codeserver import installation_tree
from workspace_agent.errors import AgentError
from workspace_agent.lockdown import builtin_removal, codeserver, spec
from workspace_agent.plan import apply_plan, build_plan

NOBODY = 65534
RUNTIMES = ("copilot-sdk", "copilot-sdk-linux-x64")


def full_tree(root: Path) -> Path:
    """An installation with the built-in Copilot Chat, both runtime packages and an unrelated extension."""
    binary = installation_tree(root)
    for name in RUNTIMES:
        package = root / "lib" / "vscode" / "node_modules" / "@github" / name
        (package / "dist").mkdir(parents=True)
        (package / "dist" / "index.js").write_text("// runtime\n")
    (root / "lib" / "vscode" / "node_modules" / "@github" / "other").mkdir()
    (root / "lib" / "vscode" / "extensions" / "git" / "package.json").write_text("{}")
    return binary


def kept_parts(root: Path) -> list[str]:
    vscode = root / "lib" / "vscode"
    return sorted(str(p.relative_to(vscode)) for p in [*vscode.glob("extensions/*"), *vscode.glob("node_modules/@github/*")])


def test_policy_switch_is_a_boolean() -> None:
    assert spec.build({}, {"remove_builtin_copilot": True}).remove_builtin_copilot is True
    assert spec.build({}, {}).remove_builtin_copilot is False
    with pytest.raises(AgentError, match=r"remove_builtin_copilot='yes' must be true or false"):
        spec.build({}, {"remove_builtin_copilot": "yes"})


def test_the_fingerprint_changes_only_when_the_switch_is_on() -> None:
    off, on = spec.build({}, {}), spec.build({}, {"remove_builtin_copilot": True})
    assert "remove_builtin_copilot" not in off.as_data() and on.as_data()["remove_builtin_copilot"] is True


def test_without_the_switch_it_is_reported_with_what_would_delete_it(tmp_path: Path) -> None:
    binary = full_tree(tmp_path / "cs")
    plan = build_plan([codeserver.builtin_copilot_rule(str(binary))])
    result = plan.results[0]
    assert result.state == "drift"
    assert "copilot-sdk-linux-x64" in (result.before or "") and "built-in GitHub.copilot-chat 0.67.0" in (result.before or "")
    assert "remove_builtin_copilot = true" in (result.message or "")
    assert apply_plan(plan)[0].state == "drift"
    assert len(builtin_removal.leftovers(tmp_path / "cs")) == 3


def test_with_the_switch_it_is_deleted_and_the_rest_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "cs"
    binary = full_tree(root)
    plan = build_plan([codeserver.builtin_copilot_rule(str(binary), remove=True)])
    assert plan.results[0].state == "drift" and plan.results[0].after == "deleted"
    assert apply_plan(plan)[0].state == "corrected"
    assert builtin_removal.leftovers(root) == []
    assert kept_parts(root) == ["extensions/git", "node_modules/@github/other"]
    again = build_plan([codeserver.builtin_copilot_rule(str(binary), remove=True)])
    assert again.results[0].state == "compliant" and again.actions == []


def test_a_link_is_removed_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "cs"
    binary = installation_tree(root, copilot=False)
    elsewhere = tmp_path / "elsewhere-copilot"
    elsewhere.mkdir()
    (elsewhere / "package.json").write_text(json.dumps({"version": "0.67.0"}))
    (root / builtin_removal.BUILTIN_COPILOT).symlink_to(elsewhere)
    plan = build_plan([codeserver.builtin_copilot_rule(str(binary), remove=True)])
    assert apply_plan(plan)[0].state == "corrected"
    assert not (root / builtin_removal.BUILTIN_COPILOT).exists() and (elsewhere / "package.json").is_file()


def test_delete_refuses_paths_outside_the_installation(tmp_path: Path) -> None:
    (tmp_path / "cs" / "lib" / "vscode").mkdir(parents=True)
    outside = tmp_path / "precious"
    outside.mkdir()
    with pytest.raises(AgentError, match="not inside"):
        builtin_removal.delete([outside], tmp_path / "cs")
    assert outside.is_dir()


# -- as an unprivileged user (the workspace user of a real image) ------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged user can reach (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="wa-builtin-removal-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_as_nobody(binary: Path) -> dict[str, object]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the agent as another user")
    code = (
        "import json, sys\n"
        "from workspace_agent.lockdown import codeserver\n"
        "from workspace_agent.plan import apply_plan, build_plan\n"
        f"plan = build_plan([codeserver.builtin_copilot_rule({str(binary)!r}, remove=True)])\n"
        "r = apply_plan(plan)[0]\n"
        "print(json.dumps({'state': r.state, 'before': r.before, 'after': r.after, 'message': r.message}))\n"
    )
    proc = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": "/tmp"},
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_an_installation_it_may_not_write_is_reported_with_the_reason(shared_dir: Path) -> None:
    root = shared_dir / "usr-lib-code-server"
    binary = full_tree(root)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path == binary else 0o644)
    result = run_as_nobody(binary)
    assert result["state"] == "drift", result
    message = str(result["message"])
    assert message.startswith("not deleted at run time: ")
    assert "belongs to uid 0" in message and f"runs as uid {NOBODY}" in message and "dockerfile/Dockerfile" in message
    assert "built-in GitHub.copilot-chat 0.67.0" in str(result["before"]) and "copilot-sdk-linux-x64" in str(result["before"])
    assert len(builtin_removal.leftovers(root)) == 3


def test_an_installation_owned_by_the_workspace_user_is_cleaned(shared_dir: Path) -> None:
    root = shared_dir / "home-npm-code-server"
    binary = full_tree(root)
    for path in [root, *root.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    result = run_as_nobody(binary)
    assert result["state"] == "corrected", result
    assert builtin_removal.leftovers(root) == []
    assert kept_parts(root) == ["extensions/git", "node_modules/@github/other"]


@pytest.mark.codeserver
def test_a_copy_of_the_real_installation_is_cleaned(tmp_path: Path) -> None:
    """The real 4.139.1 tree (its package.json and the parts the image deletes), hard-linked: the
    cached installation itself is never changed."""
    real_root = codeserver.installation(Path(require("WA_CODE_SERVER", "code-server 4.139.1 (npm, with Node 24)")))
    assert real_root is not None
    real_left = builtin_removal.leftovers(real_root)
    assert len(real_left) >= 2, real_left
    copy = tmp_path / "code-server"
    (copy / "lib" / "vscode" / "extensions").mkdir(parents=True)
    (copy / "lib" / "vscode" / "node_modules" / "@github").mkdir(parents=True)
    shutil.copy2(real_root / "package.json", copy / "package.json")
    for path in real_left:
        subprocess.run(["cp", "-al", str(path), str(copy / path.relative_to(real_root))], check=True, timeout=120)
    binary = copy / "bin" / "code-server"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)

    plan = build_plan([codeserver.builtin_copilot_rule(str(binary), remove=True)])
    before = plan.results[0].before or ""
    assert "built-in GitHub.copilot-chat 0.67" in before and "(code-server 4.139.1)" in before
    assert apply_plan(plan)[0].state == "corrected"
    assert builtin_removal.leftovers(copy) == []
    assert builtin_removal.leftovers(real_root) == real_left  # the cache is untouched
