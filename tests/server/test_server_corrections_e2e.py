"""End to end: a real drift server process, `bootstrap --report` enrolls, `workspace-agent watch` puts
a flipped key back and its correction shows on the server; while the server is down corrections
wait in the watcher's queue and go out once it is back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.conftest import ADMIN, SECRET, free_port, serving
from tests.test_watch import KEY, start_watcher, value, wait_for
from workspace_agent import wire
from workspace_agent.corrections import spool_for
from workspace_agent.paths import Paths

# Left out of `scripts/test --fast`: a real drift server process and agent runs.
pytestmark = pytest.mark.slow

WS = "ws-watch-e2e"
DELIVERY_BOUND_S = 30.0  # a delivery attempt starts a child process: generous on a loaded machine


def shown(url: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{url}{wire.WORKSPACES_PATH}/{WS}", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["corrections"]["items"]
    return items


def flip(path: Path) -> None:
    path.write_text(path.read_text().replace(f'"{KEY}": true', f'"{KEY}": false'))


def test_corrections_reach_the_server_and_wait_while_it_is_down(
    tmp_path: Path, home: Path, keyed_env: str, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Any]
) -> None:
    db_url = f"sqlite:///{tmp_path / 'drift.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("DRIFT_SERVER_URL", url)
    monkeypatch.setenv("DRIFT_ENROLLMENT_SECRET", SECRET)
    monkeypatch.setenv("CODER_WORKSPACE_ID", WS)
    paths = Paths.for_home(home)
    with serving(db_url, tmp_path / "server.log", port=port):
        result = cli("bootstrap", "--report", "-q")
        assert result.code == 0, result.all
        watcher = start_watcher(home, tmp_path)
        try:
            flip(paths.user_settings)
            wait_for(lambda: value(paths.user_settings) is True)
            wait_for(lambda: any(c["rule_id"] == f"vscode.setting.{KEY}" for c in shown(url)), DELIVERY_BOUND_S)
            first = shown(url)[0]
            assert first["restored"] is True and first["before"] == "false" and first["after"] == "true"
            page = httpx.get(f"{url}/workspaces/{WS}", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
            assert first["correction_id"] in page.text
        except BaseException:
            watcher.stop()
            raise
    try:
        flip(paths.user_settings)  # the server is down now
        wait_for(lambda: value(paths.user_settings) is True)
        wait_for(lambda: len(spool_for(paths).entries()) == 1)
        wait_for(lambda: "corrections not sent yet" in watcher.output and "unreachable" in watcher.output,
                 DELIVERY_BOUND_S)
        with serving(db_url, tmp_path / "server2.log", port=port):
            flip(paths.user_settings)  # a new correction wakes the sender: both go out, oldest first
            wait_for(lambda: len(shown(url)) == 3, DELIVERY_BOUND_S)
            assert spool_for(paths).entries() == []
            assert all(c["restored"] for c in shown(url))
    finally:
        assert watcher.stop() == 0
