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


# -- the provisioner, in-process, against loopback stand-ins of Coder and LiteLLM ----------------

from collections.abc import Iterator

from tests.standins.coder_agent_api import CoderStandin, run_coder
from tests.standins.litellm_keys import LitellmKeys, run_litellm_keys

PROVISIONER_SECRET = "Prov-Secret-7f3a9c2e1b"
DERIVATION_SECRET = "derive-Lq2Vb7Rt9Wz3Ahx8Km4Xy7Pq1Ns8Dv5"


@pytest.fixture
def coder() -> Iterator[CoderStandin]:
    with run_coder() as standin:
        yield standin


@pytest.fixture
def litellm() -> Iterator[LitellmKeys]:
    with run_litellm_keys() as standin:
        yield standin


@pytest.fixture
def prov_env(coder: CoderStandin, litellm: LitellmKeys, tmp_path: Path) -> dict[str, str]:
    """The environment of a hardened provisioner wired to the stand-ins."""
    return {
        "PROVISIONER_SECRET": PROVISIONER_SECRET,
        "LITELLM_URL": litellm.url,
        "LITELLM_MASTER_KEY": litellm.master_key,
        "KEY_PROVISIONER_DERIVATION_SECRET": DERIVATION_SECRET,
        "KEY_PROVISIONER_DB": str(tmp_path / "prov" / "key-provisioner.db"),
        "CODER_URL": coder.url,
        "CODER_API_TOKEN": coder.api_token,
        "KEY_PROVISIONER_IDENTITY_CACHE_S": "0",
        # No background reconcile pass asking Coder in the middle of a test (the key lifecycle
        # tests run passes on request, or turn the loop on themselves).
        "KEY_PROVISIONER_RECONCILE_INTERVAL_S": "0",
    }
