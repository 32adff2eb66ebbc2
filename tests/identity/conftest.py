"""Identity tests: the worktree's server/ packages (coder_identity, key_provisioner) win over any
installed copy, like PYTHONPATH does for the agent; every test here is marked `server`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SERVER_SRC = Path(__file__).resolve().parents[2] / "server"
if str(SERVER_SRC) not in sys.path:
    sys.path.insert(0, str(SERVER_SRC))

pytest.importorskip("fastapi", reason="the key provisioner needs `pip install ./server`")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.server)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx honours proxy variables (trust_env); loopback tests must not go through one."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
