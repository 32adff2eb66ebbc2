"""Several `bootstrap` processes at once on one home: they take turns (or one exits cleanly), and
the result is byte-identical to a single run; a `check` running meanwhile never sees a torn file."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.faults.workspace import REPO, STATE, Workspace, clone, snapshot, temp_files
from tests.standins.provisioner import run_provisioner

SECRET = "prov-Secret-Cc41pZ"
SKIP_STATE = (f"home/{STATE}",)


def start(ws: Workspace, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(ws.command(*args), env=ws.env(**env), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def single_run(tmp_path: Path, ws: Workspace, env: dict[str, str]) -> dict[str, tuple[int, bytes | None]]:
    """The tree one bootstrap alone leaves (same paths: run on the workspace, then put it back)."""
    pristine = tmp_path / "pristine"
    clone(ws.root, pristine)
    done = ws.run("bootstrap", "-q", **env)
    assert done.returncode == 0, done.stderr
    alone = snapshot(ws.root, skip=SKIP_STATE)
    ws.restore(pristine)
    return alone


@pytest.mark.slow
def test_four_bootstraps_at_once_take_turns_and_equal_one_run(tmp_path: Path) -> None:
    ws = Workspace.prepare(tmp_path / "ws", key="")
    with run_provisioner("slow", SECRET, delay=0.7) as prov:  # the lock is held while the key is fetched
        env = {"CODER_WORKSPACE_ID": "ws-1", "CODER_WORKSPACE_OWNER": "alice", "PROVISIONER_SECRET": SECRET,
               "PROVISIONER_URL": prov.url, "WORKSPACE_AGENT_PROVISION_DEADLINE": "10"}
        alone = single_run(tmp_path, ws, env)
        started = time.monotonic()
        procs = [start(ws, "bootstrap", "--json", **env) for _ in range(4)]
        outputs = [p.communicate(timeout=60) for p in procs]
        elapsed = time.monotonic() - started
        requests = len(prov.key_requests())
    summaries = [json.loads(out) for out, _err in outputs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _out, err in outputs]
    corrected = sorted(s["counts"]["corrected"] for s in summaries)
    assert corrected[:3] == [0, 0, 0] and corrected[3] > 0, "one run changes everything, the others find it done"
    assert all(s["counts"]["error"] == 0 for s in summaries)
    assert requests == 1 + 4, "one key request per run, one after the other"
    assert elapsed >= 4 * 0.7, f"the runs must have waited for each other ({elapsed:.2f} s)"
    assert snapshot(ws.root, skip=SKIP_STATE) == alone
    assert temp_files(ws.root) == []


@pytest.mark.slow
def test_a_second_run_that_may_not_wait_exits_cleanly_and_changes_nothing(tmp_path: Path) -> None:
    ws = Workspace.prepare(tmp_path / "ws", key="")
    # The first run must still hold the lock (waiting for the key) while the whole second process
    # starts, fails to take it and exits: on a loaded 2-core machine that start alone took > 1 s.
    with run_provisioner("slow", SECRET, delay=4.0) as prov:
        env = {"CODER_WORKSPACE_ID": "ws-1", "CODER_WORKSPACE_OWNER": "alice", "PROVISIONER_SECRET": SECRET,
               "PROVISIONER_URL": prov.url, "WORKSPACE_AGENT_PROVISION_DEADLINE": "10"}
        alone = single_run(tmp_path, ws, env)
        asked = len(prov.key_requests())  # the reference run's request
        first = start(ws, "bootstrap", "-q", **env)
        # The first run holds the lock once its key request reached the provisioner; by then it has
        # also written the lockdown (before its first network byte), so nothing it writes before
        # the key arrives can be mistaken for the second run's doing.
        deadline = time.monotonic() + 20
        while len(prov.key_requests()) == asked and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(prov.key_requests()) > asked, "the first run never asked for its key"
        before = snapshot(ws.root, skip=SKIP_STATE)
        second = ws.run("bootstrap", "--wait", "0", **env)
        during = snapshot(ws.root, skip=SKIP_STATE)
        first_err = first.communicate(timeout=30)[1]
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert second.stderr.strip().startswith(f"workspace-agent: another workspace-agent run (pid {first.pid}) still holds")
    assert "try again when it has finished (or raise --wait)" in second.stderr
    assert during == before, "the run that could not take the lock wrote nothing"
    assert first.returncode == 0, first_err
    assert snapshot(ws.root, skip=SKIP_STATE) == alone


@pytest.mark.slow
def test_a_check_during_bootstraps_never_sees_a_torn_file(tmp_path: Path) -> None:
    """check takes no lock: it must still read every file whole (old or new), never half-written."""
    ws = Workspace.prepare(tmp_path / "ws")
    pristine = tmp_path / "pristine"
    clone(ws.root, pristine)
    seen: list[dict] = []
    stop = threading.Event()

    def checker() -> None:
        while not stop.is_set():
            done = ws.run("check", "--json")
            if done.stdout.strip():
                seen.append(json.loads(done.stdout))

    thread = threading.Thread(target=checker)
    thread.start()
    try:
        for _ in range(6):
            for path in [p for p in pristine.rglob("*") if p.is_file()]:  # put old versions back, atomically
                target = ws.root / path.relative_to(pristine)
                temp = target.with_name(target.name + ".restore")
                temp.write_bytes(path.read_bytes())
                temp.replace(target)
            done = ws.run("bootstrap", "-q")
            assert done.returncode == 0, done.stderr
    finally:
        stop.set()
        thread.join()
    assert len(seen) >= 3
    errors = [(r["rule_id"], r["message"]) for s in seen for r in s["rules"] if r["state"] == "error"]
    assert errors == []
