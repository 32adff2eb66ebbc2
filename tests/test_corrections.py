"""The watcher's corrections: the log line, the log file, and delivery from the on-disk queue to
a loopback HTTP server that answers what the test says (accepted, refused, down, stalled)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.standins.stall import closed_port, stalled_server
from workspace_agent import corrections, wire
from workspace_agent.config import AgentConfig
from workspace_agent.paths import Paths

# Left out of `scripts/test --fast`: each test waits on a loopback drift server's deliveries.
pytestmark = pytest.mark.slow

TOKEN = "wat_test-token-0123456789"


class Canned:
    """A loopback server answering each POST with `status`; keeps what it received."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []


@contextlib.contextmanager
def canned_server(status: int) -> Iterator[tuple[str, Canned]]:
    state = Canned(status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
            answer = b'{"ok": true}'
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def setup(home: Path, url: str, *, token_for: str | None = None) -> tuple[AgentConfig, Paths, list[str]]:
    config = AgentConfig(home=home, workspace_id="ws-1", workspace_name="dev", owner="alice", drift_server_url=url)
    paths = Paths.for_home(home, {})
    if token_for is not None:
        paths.drift_token_file.parent.mkdir(parents=True, exist_ok=True)
        paths.drift_token_file.write_text(json.dumps({"server_url": token_for, "workspace_id": "ws-1", "token": TOKEN}))
    return config, paths, []


def queued(config: AgentConfig, paths: Paths, log: list[str], count: int = 2, timeout: float = 5.0) -> corrections.Sender:
    sender = corrections.Sender(config, paths, log.append, timeout=timeout)
    for n in range(count):
        sender.queue(corrections.new_correction(f"vscode.setting.k{n}", "~/settings.json", "false", "true",
                                                restored=True, latency_ms=40 + n))
    return sender


def test_the_log_line_says_when_what_and_whether_it_was_restored() -> None:
    done = corrections.Correction("a" * 32, "vscode.setting.chat.disableAIFeatures", "~/s.json", "(unset)", "true",
                                  datetime(2026, 12, 6, 8, 21, 17, 359000, tzinfo=UTC), True, 74)
    assert done.line() == ("2026-12-06T08:21:17.359Z restored vscode.setting.chat.disableAIFeatures in ~/s.json: "
                           "(unset) → true (74 ms after the change)")
    failed = corrections.new_correction("roo.import", "~/x.json", None, None, restored=False, latency_ms=3,
                                        message="~/x.json is not valid JSONC")
    assert "NOT restored roo.import in ~/x.json: ~/x.json is not valid JSONC" in failed.line()


def test_the_log_is_appended_and_rotated(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corrections, "LOG_MAX_BYTES", 100)
    paths = Paths.for_home(home, {})
    for n in range(5):
        corrections.append_log(paths, f"line {n} " + "x" * 40)
    log = corrections.log_path(paths)
    older = log.with_name("watch.log.1")
    assert older.exists() and log.exists()
    assert log.read_text().splitlines()[-1].startswith("line 4")
    assert (log.stat().st_mode & 0o777) == 0o600


def test_delivered_batches_are_what_the_server_accepts(home: Path) -> None:
    with canned_server(200) as (url, server):
        config, paths, log = setup(home, url, token_for=url)
        sender = queued(config, paths, log)
        assert sender.flush() is None
        assert sender.spool.entries() == []
    headers, body = server.received[0]
    assert headers["authorization"] == f"Bearer {TOKEN}"
    parsed = wire.CorrectionBatch.model_validate(body)
    assert [c.rule_id for c in parsed.corrections] == ["vscode.setting.k0", "vscode.setting.k1"]
    assert parsed.workspace.id == "ws-1" and log == []


def test_without_a_token_for_this_server_they_wait(home: Path) -> None:
    with canned_server(200) as (url, server):
        config, paths, log = setup(home, url, token_for="http://another-server:8080")
        sender = queued(config, paths, log)
        assert "not enrolled" in (sender.flush() or "")
        assert len(sender.spool.entries()) == 2 and server.received == []


@pytest.mark.parametrize(("status", "kept", "said"), [
    (401, 2, "refused the workspace token"),
    (503, 2, "answered HTTP 503"),
    (404, 2, "answered HTTP 404"),  # an older server without the route: they wait for an upgrade
    (422, 0, None),
])
def test_refusals_keep_or_drop_as_retrying_could_help(home: Path, status: int, kept: int, said: str | None) -> None:
    with canned_server(status) as (url, _server):
        config, paths, log = setup(home, url, token_for=url)
        sender = queued(config, paths, log)
        problem = sender.flush()
        assert len(sender.spool.entries()) == kept
    if said is None:
        assert problem is None and any("refused 2 correction(s) (HTTP 422); dropped" in line for line in log)
    else:
        assert said in (problem or "")


def test_a_server_that_is_down_or_stalled_costs_a_bounded_wait(home: Path) -> None:
    url = closed_port()
    config, paths, log = setup(home, url, token_for=url)
    sender = queued(config, paths, log, timeout=0.5)
    assert "unreachable" in (sender.flush() or "")
    with stalled_server() as stalled:
        config, paths, log = setup(home, stalled, token_for=stalled)
        sender = corrections.Sender(config, paths, log.append, timeout=0.5)
        started = time.monotonic()
        problem = sender.flush()
        assert time.monotonic() - started < 5
    assert "timed out" in (problem or "") and len(sender.spool.entries()) == 2


def test_the_sender_thread_delivers_on_wake_and_stops(home: Path) -> None:
    with canned_server(200) as (url, server):
        config, paths, log = setup(home, url, token_for=url)
        sender = corrections.Sender(config, paths, log.append)
        sender.start()
        sender.queue(corrections.new_correction("vscode.setting.x", "~/s", "false", "true", restored=True, latency_ms=1))
        deadline = time.monotonic() + 10
        while not server.received:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sender.stop()
        assert not sender._thread.is_alive()


def test_no_drift_server_means_nothing_is_queued(home: Path) -> None:
    config, paths, log = setup(home, "")
    sender = queued(config, paths, log)
    assert not sender.enabled and sender.spool.entries() == []


def test_delivery_in_a_child_process_reports_back(home: Path) -> None:
    """The thread's path: the child does the HTTP, the resident process never imports http.client."""
    with canned_server(200) as (url, server):
        config, paths, log = setup(home, url, token_for=url)
        sender = queued(config, paths, log)
        assert sender.flush_in_child() is None
        assert sender.spool.entries() == [] and len(server.received[0][1]["corrections"]) == 2
    with canned_server(422) as (url, _server):
        config, paths, log = setup(home, url, token_for=url)
        sender = queued(config, paths, log)
        assert sender.flush_in_child() is None
        assert any("(HTTP 422); dropped" in line for line in log)  # the child's log line, logged here
    url = closed_port()
    config, paths, log = setup(home, url, token_for=url)
    sender = queued(config, paths, log, timeout=0.5)
    assert "unreachable" in (sender.flush_in_child() or "") and len(sender.spool.entries()) == 2
