"""How long one reconcile pass of the key provisioner takes for N workspaces (issue 18).

The pass asks the loopback Coder stand-in (tests/standins/coder_agent_api.py, a threaded
stdlib server: slower than coderd, so an upper bound for the provisioner's side) about every
workspace with a key, confirms the gone ones, and blocks their keys in the LiteLLM stand-in.

    PYTHONPATH=$PWD:$PWD/server python -m benchmarks.reconcile_pass --workspaces 1000,10000 --gone 1%

Bounded: at most 50,000 workspaces, loopback only, temporary files removed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path

from key_provisioner.coder_status import CoderWorkspaces
from key_provisioner.litellm import LiteLLM
from key_provisioner.reconcile import Reconciler, ReconcileSettings
from key_provisioner.revoke import Revoker
from key_provisioner.store import Store

from tests.standins.coder_agent_api import run_coder
from tests.standins.litellm_keys import run_litellm_keys

MAX_WORKSPACES = 50_000


def one(n: int, gone_fraction: float, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, run_coder() as coder, run_litellm_keys() as litellm:
        store = Store(Path(tmp) / "prov.db")
        fleet = [coder.add_workspace(f"u{i}") for i in range(n)]
        for ws in fleet:
            store.save(ws.id, 0, "standard", ws.owner)
        for ws in fleet[: int(n * gone_fraction)]:
            coder.delete(ws)
        log = logging.getLogger("bench")
        log.addHandler(logging.NullHandler())
        log.propagate = False
        revoker = Revoker(lambda: store, LiteLLM(litellm.url, litellm.master_key), "x" * 32, log)

        class _Hold:
            async def __aenter__(self) -> None:
                return None

            async def __aexit__(self, *exc: object) -> None:
                return None

        settings = ReconcileSettings(
            confirm_s=0.0, max_fraction=1.0, concurrency=concurrency, batch=n, window_max=1_000_000
        )  # no brake, no window limit: the pass itself is measured
        reconciler = Reconciler(CoderWorkspaces(coder.url, coder.api_token), lambda: store, revoker,
                                lambda _w: _Hold(), settings, log)
        t0 = time.perf_counter()
        result = asyncio.run(reconciler.run_pass())
        wall = time.perf_counter() - t0
        store.close()
        assert result.outcome == "ok", result
        return {"workspaces": n, "gone": result.gone, "revoked": result.revoked, "seconds": round(wall, 2),
                "per_workspace_ms": round(1000 * wall / max(n, 1), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", default="100,1000", help="comma-separated fleet sizes")
    parser.add_argument("--gone", default="1%", help="share deleted in Coder (e.g. 1%%)")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    gone = float(args.gone.rstrip("%")) / 100
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for n in (int(x) for x in args.workspaces.split(",")):
        print(one(min(n, MAX_WORKSPACES), gone, args.concurrency))


if __name__ == "__main__":
    main()
