"""The admin pages: sign-in, cookie session, escaping (in-process), and the real thing in headless
Chromium against a uvicorn server on loopback, with screenshots for docs/."""

from __future__ import annotations

import re

import os
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import httpx
import pytest

from tests.heavy import require
from tests.server.conftest import (
    ADMIN,
    REPO,
    SECRET,
    Api,
    Clock,
    free_port,
    make_report,
    make_settings,
    rule,
)
from workspace_agent import wire

XSS = "<script>alert(1)</script>"


@pytest.fixture
def db_url(tmp_path: Path) -> str:  # pages are the same on both databases: SQLite only here
    return f"sqlite:///{tmp_path / 'drift.db'}"


@pytest.mark.anyio
async def test_pages_need_sign_in_and_the_cookie_works(api: Api) -> None:
    resp = await api.client.get("/?status=drifted")
    assert (
        resp.status_code == 303 and resp.headers["location"] == "/login?next=%2F%3Fstatus%3Ddrifted"
    )
    login = await api.client.get("/login?next=/workspaces/x")
    assert login.status_code == 200 and 'value="/workspaces/x"' in login.text
    wrong = await api.client.post("/login", data={"token": "nope", "next": "/"})
    assert wrong.status_code == 401 and "not an admin token" in wrong.text
    assert "drift_admin" not in wrong.headers.get("set-cookie", "")
    ok = await api.client.post("/login", data={"token": ADMIN, "next": "//evil.example/x"})
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # no open redirect
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and ADMIN not in cookie
    page = await api.client.get("/")  # the client keeps the cookie
    assert page.status_code == 200 and "Fleet" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    # The same cookie opens the JSON API for reading.
    assert (await api.client.get(wire.WORKSPACES_PATH)).status_code == 200
    # Sign-out needs the session's CSRF token (in the page's form) and the page's Origin.
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    out = await api.client.post(
        "/logout", data={"csrf": csrf.group(1)}, headers={"Origin": "http://drift.test"}
    )
    assert out.status_code == 303
    assert (await api.client.get("/")).status_code == 303


@pytest.mark.anyio
async def test_workspace_token_gets_403_page(api: Api) -> None:
    token = await api.enroll("ws-1")
    resp = await api.client.get("/", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 403 and "workspace token" in resp.text


@pytest.mark.anyio
async def test_everything_is_escaped(api: Api) -> None:
    token = await api.enroll("ws-x", name=XSS, owner="<b>mallory</b>")
    body = make_report(
        "ws-x",
        [rule("<img src=x onerror=alert(2)>", "drift", "<i>before</i>", "\"after'")],
        name=XSS,
        owner="<b>mallory</b>",
        key_level="<u>lvl</u>",
    )
    assert (await api.report(token, body)).status_code == 200
    headers = {"Authorization": f"Bearer {ADMIN}"}
    for path in ("/", "/workspaces/ws-x"):
        html = (await api.client.get(path, headers=headers)).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert XSS not in html and "<script" not in html.lower()
        assert "<b>mallory" not in html and "<img" not in html and "<u>lvl" not in html
    html = (await api.client.get("/workspaces/ws-x", headers=headers)).text
    assert "&lt;i&gt;before&lt;/i&gt;" in html and "&#34;after&#39;" in html
    missing = await api.client.get("/workspaces/%3Cscript%3E", headers=headers)
    assert missing.status_code == 404 and "<script>" not in missing.text


# --- the real thing: uvicorn on loopback + headless Chromium ---------------------------------

RULES = [
    "roo.import",
    "roo.rules.enforcement",
    "opencode.config",
    "opencode.instructions",
    "key.file",
    "key.enforcement_level",
    "shell.no_plaintext_key",
    "vscode.setting.chat.disableAIFeatures",
    "vscode.setting.github.copilot.enable",
    "vscode.setting.inlineChat.mode",
    "vscode.setting.telemetry.telemetryLevel",
    "vscode.setting.roo-cline.autoImportSettingsPath",
    "extension.absent.github.copilot",
    "extension.absent.sourcegraph.cody-ai",
]
VALUES = {
    "vscode.setting.chat.disableAIFeatures": ("false", "true"),
    "vscode.setting.github.copilot.enable": ('{"*": true}', '{"*": false}'),
    "vscode.setting.inlineChat.mode": ('"live"', '"off"'),
    "extension.absent.github.copilot": ("installed 1.250.0", "absent"),
    "extension.absent.sourcegraph.cody-ai": ("installed 1.80.0", "absent"),
    "key.enforcement_level": ("unrestricted", "standard"),
}


def _rules(states: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for rule_id in RULES:
        state = states.get(rule_id, "compliant")
        before, after = VALUES.get(rule_id, (None, None)) if state != "compliant" else (None, None)
        msg = "code-server --list-extensions timed out after 10 s" if state == "error" else None
        out.append(rule(rule_id, state, before, after, target=_target(rule_id), message=msg))
    return out


def _target(rule_id: str) -> str:
    if rule_id.startswith("vscode."):
        return "~/.local/share/code-server/User/settings.json"
    if rule_id.startswith("extension."):
        return "~/.local/share/code-server/extensions"
    return {
        "roo.import": "~/.config/roo-code/settings.json",
        "key.file": "~/.config/workspace-agent/key",
        "opencode.config": "~/.config/opencode/opencode.json",
    }.get(rule_id, "~")


class ThreadServer:
    """uvicorn serving the app in a thread (so the test keeps the app's clock in hand)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def seed_fleet(url: str, clock: Clock) -> dict[str, Any]:
    """A small, realistic fleet through the real API; returns what the page should show."""
    now = clock.now
    fleet = [
        # id, name, owner, level, key level, timeline [(minutes ago, states, kind)]
        (
            "3f2a9c1e",
            "alice-payments-api",
            "alice",
            "standard",
            "standard",
            [(180, {}, "bootstrap"), (5, {}, "heartbeat")],
        ),
        (
            "7b1d44e0",
            "bob-ml-notebooks",
            "bob",
            "standard",
            "unrestricted",
            [
                (300, {}, "bootstrap"),
                (95, {"vscode.setting.chat.disableAIFeatures": "drift"}, "check"),
                (70, {"vscode.setting.chat.disableAIFeatures": "corrected"}, "bootstrap"),
                (
                    42,
                    {
                        "vscode.setting.chat.disableAIFeatures": "drift",
                        "extension.absent.github.copilot": "drift",
                        "key.enforcement_level": "drift",
                    },
                    "check",
                ),
                (
                    3,
                    {
                        "vscode.setting.chat.disableAIFeatures": "drift",
                        "extension.absent.github.copilot": "drift",
                        "key.enforcement_level": "drift",
                    },
                    "heartbeat",
                ),
            ],
        ),
        (
            "c90e11aa",
            "carol-frontend",
            "carol",
            "design-first",
            "design-first",
            [
                (240, {"vscode.setting.inlineChat.mode": "corrected"}, "bootstrap"),
                (2, {}, "heartbeat"),
            ],
        ),
        (
            "d4c3b2a1",
            "dave-infra",
            "dave",
            "standard",
            "standard",
            [
                (30, {"extension.absent.sourcegraph.cody-ai": "error"}, "check"),
                (4, {"extension.absent.sourcegraph.cody-ai": "error"}, "heartbeat"),
            ],
        ),
        (
            "e5f60718",
            "erin-sandbox",
            "erin",
            "unrestricted",
            "unrestricted",
            [(600, {}, "bootstrap"), (190, {}, "heartbeat")],
        ),
        (
            "f1e2d3c4",
            "frank-data-pipeline",
            "frank",
            "standard",
            "standard",
            [(400, {"vscode.setting.github.copilot.enable": "drift"}, "check")],
        ),
        (
            "0a9b8c7d",
            "grace-docs",
            "grace",
            "design-first",
            "design-first",
            [(60, {}, "bootstrap"), (1, {}, "heartbeat")],
        ),
        ("x55", XSS, "mallory", "standard", "standard", [(8, {}, "bootstrap")]),
    ]
    with httpx.Client(base_url=url, timeout=10) as client:
        for ws, name, owner, level, key_level, timeline in fleet:
            clock.now = now - timedelta(minutes=timeline[0][0] + 1)
            enrolled = client.post(
                wire.ENROLL_PATH,
                headers={"Authorization": f"Bearer {SECRET}"},
                json={
                    "workspace": {"id": ws, "name": name, "owner": owner},
                    "agent_version": "0.1.0",
                },
            )
            token = enrolled.json()["workspace_token"]
            for minutes_ago, states, kind in timeline:
                clock.now = now - timedelta(minutes=minutes_ago)
                body = make_report(
                    ws,
                    _rules(states),
                    name=name,
                    owner=owner,
                    kind=kind,
                    at=clock.now,
                    level=level,
                    key_level=key_level,
                )
                resp = client.post(
                    wire.REPORTS_PATH, json=body, headers={"Authorization": f"Bearer {token}"}
                )
                assert resp.status_code == 200, resp.text
        clock.now = now
        return client.get(wire.WORKSPACES_PATH, headers={"Authorization": f"Bearer {ADMIN}"}).json()


@pytest.fixture
def chromium_bin() -> str:
    return require("WA_CHROMIUM", "Debian chromium (headless)")


@pytest.mark.slow
@pytest.mark.anyio
async def test_pages_in_headless_chromium(tmp_path: Path, chromium_bin: str) -> None:
    pytest.importorskip("websockets", reason="the page test drives Chromium with `websockets`")
    from workspace_agent_server.app import create_app

    from tests.server.browser import chromium

    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    app = create_app(
        make_settings(
            f"sqlite:///{tmp_path / 'drift.db'}", heartbeat_interval_s=300, stale_after_heartbeats=3
        ),
        clock=clock,
    )
    with ThreadServer(app) as srv:
        expected = seed_fleet(srv.url, clock)
        assert expected["counts"] == {
            "drifted": 1,
            "error": 1,
            "stale": 2,
            "unknown": 0,
            "compliant": 4,
            "total": 8,
        }
        profile = tmp_path / "chromium-profile"
        profile.mkdir()
        async with chromium(chromium_bin, profile) as page:
            await page.goto(srv.url + "/")
            assert await page.js("location.pathname") == "/login"
            await page.submit_and_wait(
                f"document.querySelector('#token').value = {ADMIN!r};"
                "document.querySelector('form[action=\"/login\"]').submit()"
            )
            assert await page.js("location.pathname") == "/"
            shown = await page.js(
                "Object.fromEntries([...document.querySelectorAll('[data-count]')]"
                ".map(c => [c.dataset.count, +c.querySelector('.n').textContent]))"
            )
            assert shown == {
                k: expected["counts"][k] for k in ("compliant", "drifted", "error", "stale")
            }
            rows = await page.js(
                "[...document.querySelectorAll('#fleet tbody tr')].map(r => r.dataset.workspace)"
            )
            assert rows[0] == "7b1d44e0" and len(rows) == 8  # worst first
            # The XSS name is text on the page, and nothing ran.
            assert XSS in await page.js("document.body.innerText")
            assert await page.js("document.querySelectorAll('script').length") == 0
            assert not [e for e in page.events if e.get("method") == "Page.javascriptDialogOpening"]
            fleet_png = tmp_path / "drift-server.png"
            await page.screenshot(fleet_png)

            await page.goto(srv.url + "/?status=drifted")
            assert await page.js("document.querySelectorAll('#fleet tbody tr').length") == 1

            await page.goto(srv.url + "/workspaces/7b1d44e0")
            assert await page.js("document.querySelector('#status').textContent") == "drifted"
            first = await page.js(
                'document.querySelector(\'tr[data-rule="vscode.setting.chat.disableAIFeatures"]'
                " .first-failing').innerText"
            )
            since = clock.now - timedelta(minutes=42)
            assert since.strftime("%Y-%m-%d %H:%M") in first
            history = await page.js("document.querySelectorAll('#history tbody tr').length")
            assert history >= 7
            ws_png = tmp_path / "drift-server-workspace.png"
            await page.screenshot(ws_png)
    for png in (fleet_png, ws_png):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
        if os.environ.get("WA_UPDATE_SCREENSHOTS") == "1":
            shutil.copy(png, REPO / "docs" / png.name)


@pytest.mark.anyio
async def test_fleet_page_pages(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from workspace_agent_server import admin_pages

    monkeypatch.setattr(admin_pages, "PAGE_SIZE", 2)
    for i in range(5):
        token = await api.enroll(f"w{i}")
        await api.report(token, make_report(f"w{i}", [rule("a")]))
    headers = {"Authorization": f"Bearer {ADMIN}"}
    seen: list[str] = []
    url: str | None = "/?owner=alice"
    while url:
        html = (await api.client.get(url.replace("&amp;", "&"), headers=headers)).text
        seen += re.findall(r'data-workspace="([^"]+)"', html)
        found = re.search(r'href="([^"]+)" id="next"', html)
        url = found.group(1) if found else None
    assert sorted(seen) == ["w0", "w1", "w2", "w3", "w4"]
    assert "1–2 of 5" in (await api.client.get("/", headers=headers)).text
