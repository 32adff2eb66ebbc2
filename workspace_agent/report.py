"""Drift reports: build one from a run, decide whether it is worth sending, deliver it.

A report is queued when something changed since the last one (desired state hash, any rule's
state or values, the key's level) or when the jittered heartbeat is due; then the on-disk queue
is flushed oldest first, so reports that waited while the server was away go out before the new
one. The workspace enrolls once and keeps the token it gets (0600): with its Coder agent token when
it has one (the server asks Coder who it is: a token bound to a verified workspace), with the
shared enrollment secret otherwise or as well (the weaker fallback; docs/identity.md). A 401 means
that token is gone and the workspace enrolls again, once. Nothing here can
fail a bootstrap or a check: a problem becomes `Delivery.error`, and the reports wait.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from workspace_agent import __version__, fsio, keylevel, lock, reportstate, wire
from workspace_agent.config import AgentConfig
from workspace_agent.errors import AgentError
from workspace_agent.paths import Paths
from workspace_agent.plan import RuleResult, build_plan
from workspace_agent.redact import redact
from workspace_agent.run import Outcome
from workspace_agent.spool import Spool

Clock = Callable[[], datetime]

DEFAULT_HEARTBEAT_S = 300
HEARTBEAT_JITTER = 0.1  # ± this fraction of the interval, drawn once per report
DELIVERY_DEADLINE_S = 30.0  # all of a run's network time (key level + flush): a slow server cannot hang it
LOCK_WAIT_S = 30.0
_OK = (200, 201, 202)
_OUR_BUG = (400, 413, 422)  # retrying the same bytes cannot help: drop that report
_TRANSIENT = (408, 425, 429)
IDENTITY_MODES = ("enrollment-secret", "coder-agent-token")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Delivery:
    """What one reporting step did: shown on stderr, in `--json` and by `status`."""

    report_id: str | None = None  # the report this run queued (None: nothing new to say)
    kind: str | None = None
    sent: list[str] = field(default_factory=list)  # report ids the server accepted, in order
    duplicates: int = 0  # of those, already known to the server (a harmless resend)
    dropped: list[str] = field(default_factory=list)  # why reports were given up on
    pending: int = 0  # reports still waiting in the queue
    error: str | None = None  # why delivery stopped early (the reports wait)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.pending == 0

    def summary(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for a person (stderr)."""
        if self.error:
            waiting = f"; {self.pending} report(s) wait in the queue" if self.pending else ""
            return f"report not delivered: {self.error}{waiting}"
        if self.sent:
            dupes = f", {self.duplicates} already known" if self.duplicates else ""
            return f"report: sent {len(self.sent)}{dupes}; queue empty"
        return "report: nothing changed since the last report and no heartbeat due; nothing sent"


# -- building a report ---------------------------------------------------------------------------


def build_report(outcome: Outcome, *, kind: str, report_id: str, key_level: str | None,
                 extra_notes: list[str] | None = None) -> wire.Report:
    """The wire form of a run; every text redacted and clipped to the wire's bounds."""
    config, paths = outcome.desired.config, outcome.desired.paths
    secrets = (*config.secrets, *((outcome.key.key,) if outcome.key.key else ()))

    def text(value: str | None, limit: int = 4000) -> str | None:
        return None if value is None else _clip(redact(value, secrets), limit)

    results = outcome.results
    notes = [*outcome.notes, *(extra_notes or [])]
    if len(results) > wire.MAX_RULES:
        notes.append(f"{len(results) - wire.MAX_RULES} rule results left out (more than {wire.MAX_RULES})")
        results = results[: wire.MAX_RULES]
    rules = [
        wire.RuleResultWire(
            rule_id=_clip(r.rule_id, 200),
            target=text(_show_target(r.target, paths), 1000) or "",
            state=r.state,
            before=text(r.before),
            after=text(r.after),
            message=text(r.message),
        )
        for r in results
    ]
    finished = outcome.started_at + timedelta(seconds=outcome.duration_s)
    return wire.Report(
        report_id=report_id,
        kind=kind,  # type: ignore[arg-type]
        workspace=identity(config),
        agent_version=__version__,
        desired_sha256=outcome.desired.fingerprint(),
        prompt_sha256=outcome.desired.prompt_sha256,
        enforcement_level=config.enforcement_level,
        key_enforcement_level=key_level,
        key_source=outcome.key.source,
        exit_code=outcome.exit_code,
        started_at=outcome.started_at,
        finished_at=finished,
        rules=rules,
        notes=[text(n, 1000) or "" for n in notes[-50:]],
    )


def identity(config: AgentConfig) -> wire.WorkspaceIdentity:
    return wire.WorkspaceIdentity(
        id=config.workspace_id, name=config.workspace_name[:200], owner=config.owner[:200]
    )


def fingerprint(report: wire.Report) -> str:
    """What "changed" means: everything but the ids, times and kind of a report."""
    material = report.model_dump(
        mode="json", include={"workspace", "agent_version", "desired_sha256", "prompt_sha256",
                              "enforcement_level", "key_enforcement_level", "key_source", "rules"}
    )
    material["rules"] = sorted(material["rules"], key=lambda r: r["rule_id"])  # order is not a change
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode("utf-8")).hexdigest()


def heartbeat_due(state: reportstate.ReportState, now: datetime) -> bool:
    """Due when never sent, when the jittered interval has passed, or when the clock went backwards."""
    due = next_heartbeat(state)
    last = reportstate.parse_time(state.last_queued_at)
    if due is None or last is None:
        return True
    if now < last:  # the clock jumped back: do not stay silent until it catches up
        return True
    return now >= due


def next_heartbeat(state: reportstate.ReportState) -> datetime | None:
    """The last report's time + the server's interval × the jitter drawn for that report."""
    last = reportstate.parse_time(state.last_queued_at)
    if last is None:
        return None
    factor = state.heartbeat_factor if state.heartbeat_factor is not None else 1.0
    factor = min(max(factor, 1 - HEARTBEAT_JITTER), 1 + HEARTBEAT_JITTER)
    return last + timedelta(seconds=_interval(state) * factor)


def _show_target(target: str, paths: Paths) -> str:
    return paths.show(Path(target)) if target.startswith("/") else target


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


# -- the reporting step ----------------------------------------------------------------------------


def report_outcome(
    outcome: Outcome,
    *,
    force: bool = False,
    clock: Clock = _utc_now,
    spool: Spool | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
    deadline: float = DELIVERY_DEADLINE_S,
    log: Callable[[str], None] = lambda _m: None,
) -> Delivery:
    """Refresh the key's level, queue this run's report when it says something new, flush the queue.

    Raises AgentError only when reporting is not configured (no server URL, no workspace id);
    everything else ends up in the returned Delivery.
    """
    config, paths = outcome.desired.config, outcome.desired.paths
    if not config.drift_server_url:
        raise AgentError(
            "cannot report: no drift server is configured; set DRIFT_SERVER_URL "
            "(or drift_server_url in the policy file's [agent] table)"
        )
    if not config.workspace_id:
        raise AgentError(
            "cannot report: the workspace id is unknown; pass CODER_WORKSPACE_ID "
            "(data.coder_workspace.me.id) from the template"
        )
    spool = spool or Spool(paths.spool_dir)
    delivery = Delivery()
    with lock.exclusive(paths.report_lock_file, LOCK_WAIT_S):
        until = time.monotonic() + deadline
        key_level = _refresh_key_level(outcome, delivery, until)
        state, note = reportstate.load(paths.report_state_file)
        if note:
            delivery.notes.append(note)
        _queue_if_needed(outcome, state, spool, delivery, key_level, force=force, now=clock(), uniform=uniform)
        reportstate.save(paths.report_state_file, state)
        try:
            _flush(config, paths, spool, state, delivery, clock=clock, deadline=deadline, until=until, log=log)
        finally:
            delivery.pending = len(spool.entries())
            if delivery.error:
                state.last_error, state.last_error_at = delivery.error, clock().isoformat(timespec="seconds")
            else:
                state.last_error = state.last_error_at = None
            due = next_heartbeat(state)  # the interval may have come from this run's enrollment
            state.heartbeat_due_at = due.isoformat(timespec="seconds") if due else None
            reportstate.save(paths.report_state_file, state)
    return delivery


def _refresh_key_level(outcome: Outcome, delivery: Delivery, until: float) -> str | None:
    """Learn the key's level (best effort) and put the fresh `key.enforcement-level` result in the outcome."""
    key = outcome.key.key
    if not key:
        return None
    config, paths = outcome.desired.config, outcome.desired.paths
    timeout = min(keylevel.FETCH_TIMEOUT_S, until - time.monotonic())
    level, note = keylevel.refresh(paths, config.provisioner_url, key, timeout=timeout)
    if note:
        delivery.notes.append(note)
    fresh = build_plan(keylevel.rules(outcome.desired, outcome.key)).results
    _merge_results(outcome, fresh)
    return level if level is not None else keylevel.cached_level(paths, key)


def _merge_results(outcome: Outcome, fresh: list[RuleResult]) -> None:
    """Replace or add results, keeping the order `desired.rules()` gives (as the next check will)."""
    from workspace_agent.desired import rules

    by_id = {r.rule_id: r for r in fresh}
    merged = [by_id.pop(r.rule_id, r) for r in outcome.results] + list(by_id.values())
    order = {rule.rule_id: n for n, rule in enumerate(rules(outcome.desired, outcome.key))}
    outcome.results[:] = sorted(merged, key=lambda r: order.get(r.rule_id, len(order)))  # a list inside the record


def _queue_if_needed(outcome: Outcome, state: reportstate.ReportState, spool: Spool, delivery: Delivery,
                     key_level: str | None, *, force: bool, now: datetime,
                     uniform: Callable[[float, float], float]) -> None:
    report = build_report(outcome, kind=outcome.command, report_id=uuid.uuid4().hex, key_level=key_level,
                          extra_notes=delivery.notes)
    print_fp = fingerprint(report)
    changed = print_fp != state.last_fingerprint
    if not (force or changed or (heartbeat_due(state, now) and not spool.entries())):
        return
    if not changed and not force:
        report = report.model_copy(update={"kind": "heartbeat"})
    _entry, dropped = spool.enqueue(report.model_dump(mode="json"), now.isoformat(timespec="seconds"))
    delivery.dropped.extend(dropped)
    state.dropped_total += len(dropped)
    state.last_fingerprint = print_fp
    state.last_queued_at = now.isoformat(timespec="seconds")
    state.last_report_id = report.report_id
    state.heartbeat_factor = uniform(1 - HEARTBEAT_JITTER, 1 + HEARTBEAT_JITTER)
    delivery.report_id, delivery.kind = report.report_id, report.kind


def _interval(state: reportstate.ReportState) -> int:
    value = state.heartbeat_interval_s or DEFAULT_HEARTBEAT_S
    return min(max(value, 30), 7 * 86400)


# -- delivery --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """The per-workspace token the drift server gave at enrollment (a secret: file 0600)."""

    server_url: str
    workspace_id: str  # the workspace it was enrolled for (our CODER_WORKSPACE_ID)
    token: str = field(repr=False)
    heartbeat_interval_s: int = DEFAULT_HEARTBEAT_S
    identity_mode: str = "enrollment-secret"  # how the server knew this workspace at enrollment


def load_token(paths: Paths, config: AgentConfig) -> tuple[Token | None, str | None]:
    """The stored token when it is for this server and workspace; a note when its file needed care."""
    try:
        fact = fsio.read_fact(paths.drift_token_file, max_bytes=64 * 1024)
    except AgentError as exc:
        return None, f"ignoring the stored drift token: {exc.message}"
    if fact.text is None:
        return None, None
    try:
        data = json.loads(fact.text)
        mode = data.get("identity_mode")
        token = Token(str(data["server_url"]), str(data["workspace_id"]), str(data["token"]),
                      int(data.get("heartbeat_interval_s", DEFAULT_HEARTBEAT_S)),
                      mode if mode in IDENTITY_MODES else "enrollment-secret")
    except (ValueError, KeyError, TypeError):
        return None, f"{paths.drift_token_file} was damaged; enrolling again"
    note = None
    if fact.mode is not None and fact.mode & 0o077:
        fsio.set_mode(paths.drift_token_file, 0o600)
        note = f"{paths.drift_token_file} was readable by others (mode {fact.mode:04o}); it is set back to 0600"
    if token.server_url != config.drift_server_url or token.workspace_id != config.workspace_id or not token.token:
        return None, note  # another server or workspace: enroll for this one
    return token, note


def save_token(paths: Paths, token: Token) -> None:
    fsio.atomic_write(paths.drift_token_file, json.dumps(asdict(token), indent=1) + "\n", 0o600)


def _enroll(client: Any, config: AgentConfig, paths: Paths, state: reportstate.ReportState,
            notes: list[str]) -> tuple[Token | None, str | None]:
    """Trade the agent token (preferred) and/or the shared secret for this workspace's own token."""
    if not config.enrollment_secret and not config.agent_token:
        return None, (
            "cannot enroll with the drift server: set CODER_AGENT_TOKEN (this workspace's Coder agent "
            "token; preferred) or DRIFT_ENROLLMENT_SECRET (the shared enrollment secret)"
        )
    request = wire.EnrollRequest(workspace=identity(config), agent_version=__version__)
    answer = client.enroll(config.enrollment_secret, request.model_dump_json(), config.agent_token)
    if answer.status in (200, 201):
        try:
            enrolled = wire.EnrollResponse.model_validate(answer.body)
        except ValidationError:
            return None, f"the drift server's enrollment answer was not understood (HTTP {answer.status})"
        if not enrolled.workspace_token.strip() or any(c.isspace() for c in enrolled.workspace_token):
            return None, "the drift server's enrollment answer had an unusable token"
        token = Token(config.drift_server_url, config.workspace_id, enrolled.workspace_token,
                      enrolled.heartbeat_interval_s, enrolled.identity_mode)
        state.heartbeat_interval_s = enrolled.heartbeat_interval_s
        state.identity_mode = enrolled.identity_mode
        if config.agent_token and enrolled.identity_mode != "coder-agent-token":
            notes.append(
                "the drift server enrolled this workspace with the shared enrollment secret, not its Coder "
                "agent token (the server cannot ask Coder): a weaker identity"
            )
        try:
            save_token(paths, token)
        except AgentError as exc:
            notes.append(f"could not store the drift token (it is used for this run only): {exc.message}")
        return token, None
    if answer.status in (401, 403):
        said = f": {answer.detail()}" if answer.detail() else ""
        if config.agent_token and answer.status == 403:
            return None, (
                f"the drift server refused this workspace's identity (HTTP 403{said}): CODER_AGENT_TOKEN must "
                "be this workspace's own, current agent token"
            )
        if not config.enrollment_secret:
            return None, (
                f"the drift server does not accept the Coder agent token alone (HTTP {answer.status}{said}): "
                "give it CODER_URL and CODER_API_TOKEN, or set DRIFT_ENROLLMENT_SECRET"
            )
        return None, (
            f"the drift server refused the enrollment secret (HTTP {answer.status}): "
            "check DRIFT_ENROLLMENT_SECRET against the server's"
        )
    return None, _stop_reason(answer, config.drift_server_url, wire.ENROLL_PATH)


def _stop_reason(answer: Any, url: str, path: str) -> str:
    """Why delivery stops here (no answer, a server error, a wrong URL): the reports wait."""
    if answer.status is None:
        return f"the drift server at {url} is unreachable: {answer.problem}"
    if answer.status >= 500 or answer.status in _TRANSIENT:
        detail = f": {answer.detail()}" if answer.detail() else ""
        return f"the drift server answered HTTP {answer.status}{detail}; will try again later"
    return f"the drift server at {url} answered HTTP {answer.status} to {path}: check DRIFT_SERVER_URL"


def _flush(config: AgentConfig, paths: Paths, spool: Spool, state: reportstate.ReportState,
           delivery: Delivery, *, clock: Clock, deadline: float, until: float,
           log: Callable[[str], None]) -> None:
    """Send the queued reports oldest first; stop at the first problem that retrying later could fix."""
    entries = spool.entries()
    if not entries:
        return
    from workspace_agent.driftclient import DriftClient

    token, note = load_token(paths, config)
    if note:
        delivery.notes.append(note)
    reenrolled = False
    url = config.drift_server_url

    def drop(entry: Any, why: str) -> None:
        spool.remove(entry)
        state.dropped_total += 1
        delivery.dropped.append(why)
        log(why)

    secrets = (*config.secrets, *((token.token,) if token else ()))
    with DriftClient(url, secrets=secrets, until=until) as client:
        index = 0
        while index < len(entries):
            if time.monotonic() >= until:
                delivery.error = f"delivery took longer than {deadline:g} s; the rest goes out next time"
                return
            entry = entries[index]
            try:
                item = spool.read(entry)
            except AgentError as exc:
                delivery.notes.append(exc.message)
                log(exc.message)
                index += 1
                continue
            if item is None:  # delivered meanwhile by another run
                index += 1
                continue
            try:
                report = wire.Report.model_validate(item)
            except ValidationError:
                spool.set_aside(entry)
                delivery.notes.append(f"queued report {entry.path.name} no longer matches the wire format; moved aside")
                index += 1
                continue
            if token is None:
                token, problem = _enroll(client, config, paths, state, delivery.notes)
                if token is None:
                    delivery.error = problem
                    return
            state.identity_mode = token.identity_mode
            # The identity this report is delivered under (the server knows it anyway).
            sent = report.model_copy(update={"identity_mode": token.identity_mode})
            answer = client.post_report(token.token, sent.model_dump_json())
            status = answer.status
            if status in _OK:
                spool.remove(entry)
                delivery.sent.append(report.report_id)
                if isinstance(answer.body, dict) and answer.body.get("duplicate") is True:
                    delivery.duplicates += 1
                state.last_sent_at = clock().isoformat(timespec="seconds")
                state.last_sent_report_id = report.report_id
                index += 1
            elif status == 403 and report.workspace.id != token.workspace_id:
                drop(entry, f"report {report.report_id} is for workspace {report.workspace.id!r}, not this one; dropped")
                index += 1
            elif status in (401, 403) and not reenrolled:
                reenrolled = True  # the token was revoked or is unknown: enroll again, once
                _forget_token(paths)
                token = None
            elif status == 401:
                delivery.error = "the drift server refused a freshly enrolled token (HTTP 401); will try again later"
                return
            elif status == 403 or status in _OUR_BUG:
                drop(entry, f"the drift server refused report {report.report_id} (HTTP {status}: "
                            f"{answer.detail() or 'no reason given'}); dropped, it would be refused again")
                index += 1
            else:
                delivery.error = _stop_reason(answer, url, wire.REPORTS_PATH)
                return


def _forget_token(paths: Paths) -> None:
    try:
        fsio.remove_file(paths.drift_token_file)
    except AgentError:
        pass  # a new token overwrites it anyway
