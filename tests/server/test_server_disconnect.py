"""A client that closes the connection in the middle of its body: one INFO line from the server's
own logger (shown at --log-level info, hidden at warning), no ERROR, no traceback, nothing
stored; the server keeps answering."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import SECRET
from tests.server.replicas import Fleet, fleet_on

pytestmark = pytest.mark.slow
__all__ = ["fleet_on"]


def cut_off(url: str, path: str, headers: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: application/json\r\n"
            "Content-Length: 5000\r\n\r\n".encode()
            + b'{"workspace": {"id": "ws-cut"'
        )
        time.sleep(0.3)


@pytest.mark.parametrize("level", ["info", "warning"])
def test_disconnect_mid_body_is_one_info_line(
    tmp_path: Path, fleet_on: Callable[[str], Fleet], level: str
) -> None:
    fleet = fleet_on(f"sqlite:///{tmp_path / 'd.db'}")
    server = fleet.start(log_level=level)
    cut_off(server.url, "/api/v1/enroll", f"Authorization: Bearer {SECRET}\r\n")
    cut_off(server.url, "/api/v1/reports", "Authorization: Bearer wat_not-a-real-token\r\n")
    time.sleep(0.5)
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200
    server.stop(signal.SIGTERM)
    log = server.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log
    line = "/api/v1/enroll: the client (127.0.0.1) closed the connection before sending its whole"
    assert (line in log) == (level == "info"), log
    assert fleet.sql("SELECT count(*) FROM workspaces")[0][0] == 0
