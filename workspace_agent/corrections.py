"""What `watch` put back: one correction per rule, logged as one line and queued for the drift server.

A correction is sent to the drift server's corrections endpoint (`wire.CORRECTIONS_PATH`), in
batches, with the workspace token that `report` got at enrollment; corrections that cannot be
sent wait in their own bounded on-disk queue (spool.py), like reports do. The watcher never
enrolls: without a token they wait until the next `report` (or `bootstrap --report`) enrolls.

Standard library only (http.client, no httpx, no pydantic). The watcher is resident in every
workspace, so its memory matters: each delivery attempt runs in a short-lived child process
(`python -m workspace_agent.corrections`), so http.client and ssl (~6 MB with OpenSSL) are never
loaded into the resident process; corrections are rare, so the child's start-up is rarely paid.
`tests/server/test_server_corrections.py` checks that what this module sends is exactly what the
server's `wire.CorrectionBatch` accepts.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workspace_agent import __version__
from workspace_agent.config import AgentConfig
from workspace_agent.errors import AgentError
from workspace_agent.paths import Paths
from workspace_agent.spool import Spool

CORRECTIONS_PATH = "/api/v1/corrections"  # the same constant as wire.CORRECTIONS_PATH (a test checks)
WIRE_VERSION = 1
MAX_BATCH = 100  # wire.MAX_CORRECTIONS
MAX_TEXT = 1000
MAX_ANSWER_BYTES = 64 * 1024
TIMEOUT_S = 10.0
RETRY_S = (5.0, 15.0, 60.0, 300.0)  # wait after the 1st, 2nd, … failed attempt (then the last)
LOG_MAX_BYTES = 1024 * 1024  # watch.log is rotated to watch.log.1 beyond this
SPOOL_FILES = 500
CHILD_DEADLINE_S = 60.0  # one delivery attempt in its child process, all batches included


@dataclass(frozen=True)
class Correction:
    """One locked value found changed and what the watcher did about it."""

    correction_id: str
    rule_id: str
    target: str  # the file, as a person reads it (~/…)
    before: str | None  # the value found (secret rules: set/absent only)
    after: str | None  # the value put back
    at: datetime  # when it was put back (or found impossible to)
    restored: bool
    latency_ms: int  # from the first file event to the write
    message: str | None = None  # why it could not be restored

    def line(self) -> str:
        """The one log line: when, what, restored or not."""
        when = self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
        change = f"{self.before} → {self.after}"
        if self.restored:
            return f"{when} restored {self.rule_id} in {self.target}: {change} ({self.latency_ms} ms after the change)"
        return f"{when} NOT restored {self.rule_id} in {self.target}: {self.message or 'unknown error'}"

    def as_wire(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.astimezone(UTC).isoformat()
        for name in ("target", "before", "after", "message"):
            if isinstance(data[name], str):
                data[name] = _clip(data[name])
        return data


def new_correction(rule_id: str, target: str, before: str | None, after: str | None, *, restored: bool,
                   latency_ms: int, message: str | None = None) -> Correction:
    return Correction(_new_id(), rule_id[:200], target, before, after, datetime.now(UTC), restored,
                      max(0, latency_ms), message)


def batch(corrections: list[dict[str, Any]], config: AgentConfig) -> dict[str, Any]:
    """The body of one POST: who we are and up to MAX_BATCH corrections."""
    return {
        "wire_version": WIRE_VERSION,
        "batch_id": _new_id(),
        "workspace": {"id": config.workspace_id, "name": config.workspace_name[:200], "owner": config.owner[:200]},
        "agent_version": __version__,
        "corrections": corrections[:MAX_BATCH],
    }


def _new_id() -> str:
    return os.urandom(16).hex()  # as unique as uuid4, without importing uuid (and libuuid)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


# -- the log --------------------------------------------------------------------------------------


def log_path(paths: Paths) -> Path:
    return paths.state_dir / "watch.log"


def append_log(paths: Paths, line: str) -> None:
    """Append one line to watch.log (rotated at LOG_MAX_BYTES); best effort: a full disk is not fatal."""
    path = log_path(paths)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > LOG_MAX_BYTES:
                os.replace(path, path.with_name(path.name + ".1"))
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)


# -- delivery -------------------------------------------------------------------------------------


def spool_for(paths: Paths) -> Spool:
    return Spool(paths.state_dir / "watch" / "spool", max_files=SPOOL_FILES)


def read_token(paths: Paths, config: AgentConfig) -> str | None:
    """The workspace token `report` stored at enrollment, when it is for this server and workspace."""
    try:
        data = json.loads(paths.drift_token_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("server_url") != config.drift_server_url or data.get("workspace_id") != config.workspace_id:
        return None
    token = data.get("token")
    return token if isinstance(token, str) and token and not any(c.isspace() for c in token) else None


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer
    problem: str = ""


def post(base_url: str, token: str, body: dict[str, Any], timeout: float = TIMEOUT_S) -> Answer:
    """POST one batch; the answer body is read bounded and otherwise ignored."""
    import http.client
    import urllib.parse

    url = urllib.parse.urlsplit(base_url.rstrip("/") + CORRECTIONS_PATH)
    if url.scheme not in ("http", "https") or not url.hostname:
        return Answer(None, f"DRIFT_SERVER_URL {base_url!r} is not an http(s) URL")
    kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = kind(url.hostname, url.port, timeout=timeout)
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
        "User-Agent": f"workspace-agent/{__version__} (watch)",
    }
    try:
        conn.request("POST", url.path, body=data, headers=headers)
        response = conn.getresponse()
        response.read(MAX_ANSWER_BYTES)
        return Answer(response.status)
    except TimeoutError:
        return Answer(None, "timed out")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, getattr(exc, "strerror", None) or type(exc).__name__)
    finally:
        conn.close()


class Sender:
    """A background thread that sends queued corrections, so a slow server never delays a fix.

    It sleeps on an event (no polling) until `wake()` or a retry is due; a failed attempt waits
    RETRY_S before the next one. `stop()` ends it; what was not sent stays queued on disk.
    """

    def __init__(self, config: AgentConfig, paths: Paths, log: Any, timeout: float = TIMEOUT_S) -> None:
        self.config, self.paths, self.spool, self._log = config, paths, spool_for(paths), log
        self.timeout = timeout
        self._wake = threading.Event()
        self._stopping = False
        self._failures = 0
        self.last_problem: str | None = None
        self._thread = threading.Thread(target=self._run, name="corrections-sender", daemon=True)

    @property
    def enabled(self) -> bool:
        return bool(self.config.drift_server_url and self.config.workspace_id)

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def queue(self, correction: Correction) -> None:
        if not self.enabled:
            return
        try:
            _entry, dropped = self.spool.enqueue(correction.as_wire(), correction.at.isoformat(timespec="seconds"))
        except AgentError as exc:
            self._log(f"could not queue the correction for the drift server: {exc.message}")
            return
        for why in dropped:
            self._log(f"corrections queue: {why}")
        self._wake.set()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def flush_in_child(self) -> str | None:
        """`flush()` in a child process (see the module's docstring); its log lines come back here."""
        paths = self.paths
        job = {
            "paths": [str(paths.home), str(paths.config_home), str(paths.data_home), str(paths.state_home)],
            "server_url": self.config.drift_server_url,
            "workspace": [self.config.workspace_id, self.config.workspace_name, self.config.owner],
            "timeout": self.timeout,
        }
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "workspace_agent.corrections"], input=json.dumps(job), capture_output=True,
                text=True, timeout=CHILD_DEADLINE_S, check=False,
            )
        except subprocess.TimeoutExpired:
            return f"the delivery process did not finish in {CHILD_DEADLINE_S:g} s"
        except OSError as exc:
            return f"cannot start the delivery process: {exc.strerror or exc}"
        try:
            answer = json.loads(proc.stdout)
            lines, problem = answer["log"], answer["problem"]
        except (ValueError, KeyError, TypeError):
            said = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
            return f"the delivery process failed (exit {proc.returncode}): {said}"
        for line in lines:
            self._log(str(line))
        return None if problem is None else str(problem)

    def _run(self) -> None:
        delay: float | None = 0.0  # try once at start: corrections may wait from an earlier run
        while not self._stopping:
            if delay is None:
                self._wake.wait()
            else:
                self._wake.wait(delay)
            self._wake.clear()
            if self._stopping:
                return
            problem = self.flush_in_child()
            if problem is None:
                self._failures, delay = 0, None
                continue
            if problem != self.last_problem:
                self._log(f"corrections not sent yet: {problem}")
            self.last_problem = problem
            delay = RETRY_S[min(self._failures, len(RETRY_S) - 1)]
            self._failures += 1

    def flush(self) -> str | None:
        """Send everything queued, oldest first; None when the queue is empty, else why it stopped."""
        while True:
            entries = self.spool.entries()[:MAX_BATCH]
            if not entries:
                self.last_problem = None
                return None
            token = read_token(self.paths, self.config)
            if token is None:
                return "this workspace has not enrolled with the drift server yet (the next `workspace-agent report` does)"
            items, sent = [], []
            for entry in entries:
                try:
                    item = self.spool.read(entry)
                except AgentError as exc:
                    self._log(exc.message)
                    continue
                if item is not None:
                    items.append(item)
                    sent.append(entry)
            if not items:
                continue
            answer = post(self.config.drift_server_url, token, batch(items, self.config), self.timeout)
            if answer.status in (200, 201, 202):
                for entry in sent:
                    with contextlib.suppress(AgentError):
                        self.spool.remove(entry)
                continue
            if answer.status in (400, 413, 422):  # the same bytes would be refused again
                for entry in sent:
                    with contextlib.suppress(AgentError):
                        self.spool.remove(entry)
                self._log(f"the drift server refused {len(sent)} correction(s) (HTTP {answer.status}); dropped")
                continue
            if answer.status is None:
                return f"the drift server at {self.config.drift_server_url} is unreachable: {answer.problem}"
            if answer.status == 401:
                return "the drift server refused the workspace token (HTTP 401); the next `report` enrolls again"
            return f"the drift server answered HTTP {answer.status} to {CORRECTIONS_PATH}"


def main() -> int:
    """The delivery child: a job on stdin, `{"problem", "log"}` on stdout."""
    job = json.loads(sys.stdin.read(64 * 1024))
    paths = Paths(*(Path(part) for part in job["paths"]))
    workspace_id, name, owner = job["workspace"]
    config = AgentConfig(home=paths.home, workspace_id=workspace_id, workspace_name=name, owner=owner,
                         drift_server_url=job["server_url"])
    lines: list[str] = []
    problem = Sender(config, paths, lines.append, timeout=float(job["timeout"])).flush()
    print(json.dumps({"problem": problem, "log": lines}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
