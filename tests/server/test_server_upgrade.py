"""A rolling upgrade, and back: the previous release (a `git archive` of WA_OLD_RELEASE, default
6c1ad9a, run from its own source tree) and this one serve one database at the same time.

The new release's migration is expand-only (new tables; `schema_version` stays at what the old
release accepts), so: the old replica keeps working while the new one migrates; reports of one
workspace handled alternately by either leave every view right (the bug of the previous upgrade:
a drift stored by one release and its fix by the other left the rule in `drift`); a revoke on one
is refused by the other; and after the upgrade the old release still starts (rollback), and the
new one again after it.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.conftest import ADMIN, REPO, make_report, rule
from tests.server.replicas import Fleet, enroll, fleet_on, post_report, shared_db
from workspace_agent import wire

pytestmark = pytest.mark.slow
__all__ = ["fleet_on", "shared_db"]
OLD_RELEASE = os.environ.get("WA_OLD_RELEASE", "6c1ad9a")
GRACEFUL = (0, -signal.SIGTERM)


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The previous release's agent and server packages, as committed."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "archive", OLD_RELEASE, "server", "workspace_agent"],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.skip(f"cannot read release {OLD_RELEASE} from git: {found.stderr.decode()[:200]}")
    tree = tmp_path_factory.mktemp("old-release")
    with tarfile.open(fileobj=io.BytesIO(found.stdout)) as tar:
        # Our own archive; the "data" filter where this Python has it (3.11.4+: Debian 12 ships 3.11.2).
        if hasattr(tarfile, "data_filter"):
            tar.extractall(tree, filter="data")
        else:
            tar.extractall(tree)
    yield tree


def detail(url: str, workspace_id: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{url}{wire.WORKSPACES_PATH}/{workspace_id}",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def fleet_row(url: str, workspace_id: str) -> dict[str, Any]:
    answer = httpx.get(
        url + wire.WORKSPACES_PATH, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    (row,) = [w for w in answer.json()["workspaces"] if w["id"] == workspace_id]
    return dict(row)


def send(url: str, token: str, workspace_id: str, states: dict[str, str]) -> None:
    rules = [rule(r, s, before=None if s == "compliant" else "x") for r, s in states.items()]
    answer = post_report(url, token, make_report(workspace_id, rules, report_id=uuid.uuid4().hex))
    assert answer.status_code == 200, answer.text


def assert_views(urls: list[str], workspace_id: str, states: dict[str, str]) -> None:
    """Both releases show the same, and it is what the last report said."""
    failing = sorted(r for r, s in states.items() if s == "drift")
    for url in urls:
        d = detail(url, workspace_id)
        assert {r["rule_id"]: r["state"] for r in d["rules"]} == states, (url, d["rules"])
        for r in d["rules"]:
            if r["state"] == "compliant" and r["failing_since"] is not None:
                assert r["recovered_at"] is not None, (url, r)  # its failing episode ended
        row = fleet_row(url, workspace_id)
        assert row["state"] == ("drifted" if failing else "compliant"), (url, row)
        assert row["rules_failing"] == len(failing) and sorted(row["failing_rules"]) == failing


def meta(fleet: Fleet) -> dict[str, str]:
    return {r.key: r.value for r in fleet.sql("SELECT key, value FROM drift_meta")}


def test_rolling_upgrade_and_rollback(
    shared_db: str, fleet_on: Callable[[str], Fleet], old_tree: Path
) -> None:
    fleet = fleet_on(shared_db)
    old = fleet.start(tree=old_tree)
    # really the old code: it has no per-replica counters
    assert "drift_all_" not in httpx.get(old.url + "/metrics", timeout=10).text
    assert meta(fleet) == {"schema_version": "3"}
    token = enroll(old.url, "ws-u")
    send(old.url, token, "ws-u", {"a": "compliant", "b": "compliant"})

    new = fleet.start()  # migrates while the old replica serves
    assert meta(fleet) == {"schema_version": "3", "schema_expanded": "5"}
    both = [old.url, new.url]
    steps = [
        (new.url, {"a": "compliant", "b": "compliant"}),  # a heartbeat on the new one
        (old.url, {"a": "drift", "b": "compliant"}),  # drift on the old one …
        (new.url, {"a": "compliant", "b": "compliant"}),  # … fixed on the new one
        (new.url, {"a": "compliant", "b": "compliant"}),
        (new.url, {"a": "compliant", "b": "drift"}),  # and the other way round
        (old.url, {"a": "compliant", "b": "compliant"}),
        (old.url, {"a": "compliant", "b": "compliant"}),
        (new.url, {"a": "drift", "b": "drift"}),
        (old.url, {"a": "drift", "b": "drift"}),
        (new.url, {"a": "compliant", "b": "compliant"}),
        # Same rules before and after a drift stored by the other release: the case that a
        # digest kept by only one release gets wrong (the stale digest matches the fix).
        (old.url, {"a": "compliant", "b": "compliant"}),
        (new.url, {"a": "drift", "b": "compliant"}),
        (old.url, {"a": "compliant", "b": "compliant"}),
        (new.url, {"a": "compliant", "b": "compliant"}),
        (old.url, {"a": "compliant", "b": "drift"}),
        (new.url, {"a": "compliant", "b": "compliant"}),
    ]
    for url, states in steps:
        send(url, token, "ws-u", states)
        assert_views(both, "ws-u", states)

    # One report id to both: stored once. A revoke on the new one holds on the old one.
    body = make_report("ws-u", [rule("a"), rule("b")], report_id=uuid.uuid4().hex)
    assert post_report(old.url, token, body).json()["duplicate"] is False
    assert post_report(new.url, token, body).json()["duplicate"] is True
    revoke = httpx.post(
        f"{new.url}{wire.WORKSPACES_PATH}/ws-u/revoke",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    )
    assert revoke.status_code == 200
    refused = post_report(old.url, token, make_report("ws-u", [rule("a"), rule("b")]))
    assert (refused.status_code, refused.json()["reason"]) == (401, "revoked")

    # Rollback: the new replica goes, the old release starts again on the expanded database.
    token = enroll(new.url, "ws-u")
    assert new.stop(signal.SIGTERM) in GRACEFUL
    assert old.stop(signal.SIGTERM) in GRACEFUL
    again = fleet.start(tree=old_tree)
    send(again.url, token, "ws-u", {"a": "drift", "b": "compliant"})
    assert_views([again.url], "ws-u", {"a": "drift", "b": "compliant"})
    # … and forward again, both serving.
    newer = fleet.start()
    send(newer.url, token, "ws-u", {"a": "compliant", "b": "compliant"})
    assert_views([again.url, newer.url], "ws-u", {"a": "compliant", "b": "compliant"})
    assert meta(fleet) == {"schema_version": "3", "schema_expanded": "5"}
    for replica in (again, newer):
        assert replica.stop(signal.SIGTERM) in GRACEFUL
        assert "Traceback" not in replica.log.read_text()
