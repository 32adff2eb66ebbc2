"""`workspace-agent status`: what the last run found and how reporting is doing, without doing any work.

It reads only the last-run record (written by run.record), the report state and the queue's file
names: no network, no config validation, no click or pydantic. Coder runs `status --short` on
every workspace every few seconds, so it must cost about as much as starting Python: that form
reads the three things it shows straight from the files (`short_from_files`), without the Paths,
ReportState and Spool dataclasses (creating a dataclass costs as much as importing a module);
a test keeps it equal to the line the full reader gives.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

TYPE_CHECKING = False  # typing itself is not imported: `status --short` runs every few seconds
if TYPE_CHECKING:
    from typing import Any

from workspace_agent.isotime import parse_time

if TYPE_CHECKING:
    from pathlib import Path

    from workspace_agent.paths import Paths

NEVER_CHECKED = "never checked: run workspace-agent check"
STALE_CHECK_S = 3600  # older than this, the short line also says when the last check ran
_MAX_RECORD_BYTES = 4 * 1024 * 1024


def gather(paths: Paths) -> dict[str, Any]:
    """Everything status shows, as plain data (also the `--json` form)."""
    from workspace_agent import reportstate
    from workspace_agent.spool import Spool

    last_run, problem = _read_last_run(paths.last_run_file)
    state, state_note = reportstate.load(paths.report_state_file)
    try:
        queued, queued_bytes = Spool(paths.spool_dir).size()
    except Exception:  # noqa: BLE001 - a status line must not fail on an unreadable queue dir
        queued, queued_bytes = 0, 0
    data: dict[str, Any] = {"last_run": last_run, "last_run_problem": problem}
    data["report"] = {
        "enrolled": paths.drift_token_file.exists(),
        "last_sent_at": state.last_sent_at,
        "last_sent_report_id": state.last_sent_report_id,
        "last_queued_at": state.last_queued_at,
        "heartbeat_due_at": state.heartbeat_due_at,
        "last_error": state.last_error,
        "last_error_at": state.last_error_at,
        "dropped_total": state.dropped_total,
        "identity_mode": state.identity_mode,
        "queued": queued,
        "queued_bytes": queued_bytes,
        "problem": state_note,
    }
    return data


def short_from_files(home: str, environ: Mapping[str, str], now: datetime | None = None) -> str:
    """The `--short` line from the files alone: what short_line(gather(...)) gives, read leanly
    (the same paths as Paths.for_home, the same checks as reportstate.load and Spool.entries)."""
    state_home = environ.get("XDG_STATE_HOME", "")
    state_dir = os.path.join(state_home if state_home.startswith("/") else os.path.join(home, ".local", "state"),
                             "workspace-agent")
    last_run, problem = _read_last_run(os.path.join(state_dir, "last-run.json"))
    report: dict[str, Any] = {"last_sent_at": None, "queued": 0}
    try:
        state = json.loads(_read_small(os.path.join(state_dir, "report", "state.json"), 256 * 1024 + 1))
        sent = state.get("last_sent_at") if isinstance(state, dict) else None
        report["last_sent_at"] = sent if isinstance(sent, str) else None
    except (OSError, ValueError):
        pass  # no state, or a damaged one: nothing sent that we know of (as reportstate.load)
    try:
        with os.scandir(os.path.join(state_dir, "report", "spool")) as scan:
            report["queued"] = sum(1 for item in scan if _is_entry(item))
    except OSError:
        pass
    data = {"last_run": last_run, "last_run_problem": problem, "report": report}
    return short_line(data, now or datetime.now(UTC))


def _is_entry(item: os.DirEntry[str]) -> bool:
    """A queued report's file, as Spool.entries counts them: 12 digits + .json, a regular file."""
    name = item.name
    try:
        return len(name) == 17 and name.endswith(".json") and name[:12].isdigit() and name[:12].isascii() \
            and item.is_file(follow_symlinks=False)
    except OSError:
        return False


def _read_small(path: Path | str, limit: int) -> bytes:
    """At most `limit` bytes of a regular file, never through a link at its name and never
    waiting (a FIFO or device planted there is an OSError): `status` runs every few seconds."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _read_last_run(path: Path | str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        raw = _read_small(path, _MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("counts"), dict):
        return None, f"{path} is damaged"
    return data, None


def ago(when: str | None, now: datetime) -> str | None:
    """'2m ago' for an ISO time; 'just now' for a time ahead of the clock; None when unknown."""
    then = parse_time(when)
    if then is None:
        return None
    seconds = int((now - then).total_seconds())
    if seconds < 5:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _count(counts: Mapping[str, Any], name: str) -> int:
    value = counts.get(name, 0)
    return value if isinstance(value, int) else 0


def _rules(last_run: Mapping[str, Any]) -> list[dict[str, Any]]:
    rules = last_run.get("rules")
    return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []


def _key(last_run: Mapping[str, Any]) -> dict[str, Any]:
    key = last_run.get("key")
    return key if isinstance(key, dict) else {}


def _key_part(last_run: Mapping[str, Any]) -> str:
    if not _key(last_run).get("masked"):
        return "no key"
    for rule in _rules(last_run):
        if rule.get("rule_id") == "key.enforcement-level" and rule.get("state") == "drift":
            return f"key level {rule.get('before')}≠{rule.get('after')}"
    return "key ok"


# How a server knew this workspace, in words (docs/identity.md).
IDENTITY_WORDS = {
    "coder-agent-token": "verified by Coder from this workspace's agent token",
    "enrollment-secret": "shared enrollment secret only: weaker, any workspace could claim this one",
}


def _key_source(key: Mapping[str, Any]) -> str:
    source = str(key.get("source", "?"))
    if source != "provisioner":
        return source
    if key.get("identity") == "coder-agent-token":
        return "provisioner, workspace verified by Coder"
    return "provisioner, shared secret only"


def short_line(data: Mapping[str, Any], now: datetime) -> str:
    """One line for a Coder metadata block."""
    last_run = data.get("last_run")
    if last_run is None:
        if data.get("last_run_problem"):
            return f"status unknown: {data['last_run_problem']}; run workspace-agent check"
        return NEVER_CHECKED
    counts = last_run["counts"]
    total, drift, errors = _count(counts, "total"), _count(counts, "drift"), _count(counts, "error")
    good = _count(counts, "compliant") + _count(counts, "corrected")
    if drift:
        head = f"drift {drift}/{total}" + (f", {errors} error{'s' if errors != 1 else ''}" if errors else "")
    elif errors:
        head = f"error {errors}/{total}"
    else:
        head = f"compliant {good}/{total}"
    parts = [head, _key_part(last_run)]
    report = data.get("report", {})
    sent = ago(report.get("last_sent_at"), now)
    tail = f"reported {sent}" if sent else "not reported"
    if report.get("queued"):
        tail += f" (queue {report['queued']})"
    parts.append(tail)
    checked_at = parse_time(last_run.get("finished_at"))
    if checked_at is not None and (now - checked_at).total_seconds() > STALE_CHECK_S:
        parts.append(f"checked {ago(last_run.get('finished_at'), now)}")
    return " · ".join(parts)


def long_text(data: Mapping[str, Any], now: datetime, show: Any = str) -> str:
    """Several lines for a person at a terminal."""
    lines: list[str] = []
    last_run = data.get("last_run")
    if last_run is None:
        lines.append(f"last run: {data.get('last_run_problem') or 'none yet'} (run `workspace-agent check`)")
    else:
        counts = last_run["counts"]
        when = ago(last_run.get("finished_at"), now) or "at an unknown time"
        lines.append(
            f"last run: {last_run.get('command', '?')} {when} ({last_run.get('finished_at', '?')}), "
            f"exit {last_run.get('exit_code', '?')}"
        )
        lines.append(
            f"rules: {_count(counts, 'total')} total: {_count(counts, 'compliant')} ok, "
            f"{_count(counts, 'corrected')} corrected, {_count(counts, 'drift')} drift, {_count(counts, 'error')} errors"
        )
        for rule in _rules(last_run):
            if rule.get("state") in ("drift", "error"):
                target = str(rule.get("target", ""))
                shown = show(_path(target)) if target.startswith("/") else target
                detail = rule.get("message") if rule.get("state") == "error" else f"{rule.get('before')} → {rule.get('after')}"
                lines.append(f"  {rule.get('state'):<6} {rule.get('rule_id')}  {shown}  {detail}")
        key = _key(last_run)
        generation = ""
        if isinstance(key.get("generation"), int):  # only then: keysource is no light import
            from workspace_agent.keysource import generation_words

            generation = generation_words(key.get("generation"), key.get("rotated_at"), key.get("level"))
        lines.append(f"key: {key.get('masked') or 'none'} ({_key_source(key)}); {_key_part(last_run)}"
                     + (f"; {generation}" if generation else ""))
        lines.append(f"enforcement level: {last_run.get('enforcement_level', '?')} requested")
        lines.append(f"desired state: {str(last_run.get('desired_sha256', '?'))[:12]}…")
    report = data.get("report", {})
    sent = ago(report.get("last_sent_at"), now)
    line = f"report: last sent {sent}" if sent else "report: never sent"
    if report.get("queued"):
        line += f"; {report['queued']} waiting in the queue ({report.get('queued_bytes', 0) // 1024 + 1} KB)"
    if not report.get("enrolled"):
        line += "; not enrolled yet"
    lines.append(line)
    mode = report.get("identity_mode")
    if mode in IDENTITY_WORDS:
        lines.append(f"report identity: {mode} ({IDENTITY_WORDS[mode]})")
    if report.get("last_error"):
        lines.append(f"report problem ({ago(report.get('last_error_at'), now) or '?'}): {report['last_error']}")
    if report.get("dropped_total"):
        lines.append(f"reports given up on so far: {report['dropped_total']}")
    if report.get("problem"):
        lines.append(f"note: {report['problem']}")
    return "\n".join(lines) + "\n"


def render(paths: Paths, form: str, now: datetime | None = None) -> str:
    """The text for `status` in one of its forms: short, long, json."""
    now = now or datetime.now(UTC)
    data = gather(paths)
    if form == "short":
        return short_line(data, now) + "\n"
    if form == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return long_text(data, now, paths.show)


def fast_main(args: Sequence[str], environ: Mapping[str, str]) -> int | None:
    """`status [--short|--json] [--home DIR]` without click; None: let the full CLI handle it."""
    form, home = "long", None
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--short":
            form = "short"
        elif arg == "--json":
            form = "json"
        elif arg == "--home" and rest:
            home = rest.pop(0)
        elif arg.startswith("--home="):
            home = arg.split("=", 1)[1]
        else:
            return None  # --help, typos, ...: the full CLI explains
    home = home or environ.get("HOME") or os.path.expanduser("~")
    if not home.startswith("/"):
        return None  # the full CLI reports the bad value properly
    import sys

    if form == "short":
        sys.stdout.write(short_from_files(home, environ) + "\n")
        return 0
    from workspace_agent.paths import Paths

    sys.stdout.write(render(Paths.for_home(_path(home), environ), form))
    return 0


def _path(text: str) -> Path:
    from pathlib import Path

    return Path(text)
