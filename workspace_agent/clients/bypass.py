"""Gateway bypass: raw provider credentials in the workspace (report only, never a value).

A key such as ANTHROPIC_API_KEY in a shell start file or in the environment of a running process
lets a tool reach the provider directly, around the LiteLLM gateway: no budget, no enforcement
prompt, no audit. The rule `bypass.provider-credentials` looks in two places:

* shell start files (settings/credentials.toml `files`): assignments of a listed name to a
  literal value; a value built at run time (`$VAR`, `$(…)`) is left to the process scan, and the
  old platform block (`# AI Configuration (LiteLLM)`) is `shell.legacy-plaintext-key`'s business;
* the environment of the processes of this user (psutil), at most `max_processes` of them. As
  root the scan is skipped: a workspace user is never root, and on a shared host root's processes
  are not the workspace's.

A listed variable that holds this workspace's own virtual key is not a bypass. What is reported
is the variable's name and where it is (`pid 812 (python3)`, `~/.bashrc:14`); the value is only
compared in memory and never stored, printed, masked or sent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from workspace_agent import data, fsio
from workspace_agent.desired import Desired
from workspace_agent.errors import AgentError
from workspace_agent.keysource import KeyResolution
from workspace_agent.plan import ActionFact, ActionRule, Rule
from workspace_agent.record import Record

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

RULE_ID = "bypass.provider-credentials"
MAX_RC_BYTES = 1024 * 1024
PLACES_SHOWN = 5  # per variable; the rest is counted
POLICY_KEYS = ("extra_names", "ignore_names", "extra_files")

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# POSIX shells: NAME=value, export/declare -x/typeset -x/readonly/local NAME=value.
_POSIX = re.compile(rf"^\s*(?:(?:export|readonly|local|declare|typeset)(?:\s+-[A-Za-z]+)*\s+)?({_NAME})=(.*)$")
# fish: set [-gx|-Ux|--export …] NAME value…
_FISH = re.compile(rf"^\s*set\s+(?:-{{1,2}}[A-Za-z-]+\s+)*({_NAME})\s+(.+)$")


class Policy(Record):
    """The names to look for and the start files to read (shipped list + the admin's policy)."""

    names: frozenset[str]
    files: tuple[str, ...]
    max_processes: int


class Finding(Record):
    name: str  # the variable
    place: str  # "pid 812 (python3)" or "~/.bashrc:14"


class Scan(Record):
    """What the process scan saw (for the message): never any value."""

    findings: tuple[Finding, ...] = ()
    scanned: int = 0
    unreadable: int = 0  # same user, but the kernel refused (e.g. a non-dumpable process)
    truncated: bool = False
    skipped: str | None = None  # why processes were not scanned at all


def load_policy(policy: Mapping[str, Any]) -> Policy:
    shipped = data.settings_file("credentials").get("bypass", {})
    extra = policy.get("bypass", {})
    if not isinstance(extra, dict):
        raise AgentError("policy file: [bypass] must be a table")
    unknown = sorted(set(extra) - set(POLICY_KEYS))
    if unknown:
        raise AgentError(f"policy file: unknown key {unknown[0]!r} in [bypass]; allowed: {', '.join(POLICY_KEYS)}")
    lists = {key: _strings(extra.get(key, []), f"[bypass].{key}") for key in POLICY_KEYS}
    names = (set(shipped.get("names", [])) | set(lists["extra_names"])) - set(lists["ignore_names"])
    files = tuple(dict.fromkeys([*shipped.get("files", []), *lists["extra_files"]]))
    return Policy(frozenset(names), files, int(shipped.get("max_processes", 2000)))


def check_policy(table: dict[str, Any]) -> None:
    """The policy file's [bypass] table, checked at load (policyfile.py)."""
    load_policy({"bypass": table})


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AgentError(f"policy file: {where} must be a list of strings")
    return value


# -- shell start files (pure over text) -------------------------------------------------------------


def rc_assignments(text: str, names: frozenset[str], key: str | None, skip: set[int] | None = None) -> list[tuple[int, str]]:
    """(1-based line, name) of every listed name set to a literal value other than `key`.

    `skip` holds 0-based line indexes to ignore (the old platform block)."""
    found: list[tuple[int, str]] = []
    for index, line in enumerate(text.splitlines()):
        if skip and index in skip:
            continue
        match = _POSIX.match(line) or _FISH.match(line)
        if match is None or match.group(1) not in names:
            continue
        if _is_raw_credential(match.group(2), key):
            found.append((index + 1, match.group(1)))
    return found


def _is_raw_credential(raw: str, key: str | None) -> bool:
    """A literal, non-empty value that is not the virtual key (a value built at run time is not
    judged here: the process scan sees what it became)."""
    if "$" in raw or "`" in raw:
        return False
    try:
        import shlex

        words = shlex.split(raw, comments=True)
    except ValueError:  # an unbalanced quote: judge the raw text
        words = [raw.strip().strip("'\"")]
    value = words[0] if words else ""
    return bool(value) and value != key


def hide_values(text: str, names: frozenset[str]) -> str:
    """The text (a diff of start files) with the value of every listed assignment replaced by
    `(hidden)`: a diff's context lines must not print a raw provider key either."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        prefix = line[:1] if line[:1] in "+- " and not line.startswith(("+++", "---")) else ""
        body = line[len(prefix):]
        ending = body[len(body.rstrip("\r\n")):]
        match = _POSIX.match(body.rstrip("\r\n")) or _FISH.match(body.rstrip("\r\n"))
        if match is not None and match.group(1) in names and match.group(2).strip():
            body = body[: match.start(2)] + "(hidden)" + ending
        out.append(prefix + body)
    return "".join(out)


def shown_names(policy: Mapping[str, Any]) -> frozenset[str]:
    """The names whose values are hidden in diffs (the shipped ones when the policy is unusable)."""
    try:
        return load_policy(policy).names
    except AgentError:
        return load_policy({}).names


def scan_files(home: Path, patterns: Iterable[str], names: frozenset[str], key: str | None,
               show: Any = str) -> list[Finding]:
    """Findings in the start files under `home` (symlinks are followed: only read)."""
    from workspace_agent.clients.shell import legacy_lines

    found: list[Finding] = []
    for path in _expand(home, patterns):
        try:  # as the home's owner, regular files only, the first MAX_RC_BYTES
            text = fsio.read_linked(path, MAX_RC_BYTES, truncate=True)
        except AgentError as exc:
            raise AgentError(f"cannot look for provider keys: {exc.message}") from None
        if text is None:
            continue
        skip = legacy_lines(text)
        found += [Finding(name, f"{show(path)}:{line}") for line, name in rc_assignments(text, names, key, skip)]
    return found


def _expand(home: Path, patterns: Iterable[str]) -> Iterator[Path]:
    for pattern in patterns:
        if "*" in pattern:
            yield from sorted(home.glob(pattern))
        else:
            yield home / pattern


# -- processes -----------------------------------------------------------------------------------------


def env_findings(env: Mapping[str, str], names: frozenset[str], key: str | None) -> list[str]:
    """The listed names an environment sets to something other than the virtual key (pure)."""
    return sorted(name for name in names.intersection(env) if env[name] and env[name] != key)


def scan_processes(names: frozenset[str], key: str | None, *, uid: int, limit: int,
                   pids: Iterable[int] | None = None) -> Scan:
    """Read the environment of up to `limit` processes whose real uid is `uid` (or of `pids`)."""
    if uid == 0:
        return Scan(skipped="running as root: process environments are not read")
    import psutil  # type: ignore[import-untyped]  # ~14 ms: only when it is used

    candidates: Iterable[Any] = (
        psutil.process_iter(["pid", "name", "uids"]) if pids is None else _processes(psutil, pids)
    )
    findings: list[Finding] = []
    scanned = unreadable = 0
    truncated = False
    for process in candidates:
        try:
            if process.uids().real != uid:
                continue
            if scanned >= limit:
                truncated = True
                break
            scanned += 1
            env = process.environ()
            hits = env_findings(env, names, key)
            del env  # the values stay in this frame only
            if hits:
                label = f"pid {process.pid} ({process.name()})"
                findings += [Finding(name, label) for name in hits]
        except (psutil.AccessDenied, psutil.ZombieProcess):
            unreadable += 1
        except psutil.NoSuchProcess:
            continue
    return Scan(tuple(findings), scanned, unreadable, truncated)


def _processes(psutil: Any, pids: Iterable[int]) -> Iterator[Any]:
    for pid in pids:
        try:
            yield psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue


# -- the rule ------------------------------------------------------------------------------------------


def describe(findings: list[Finding]) -> str:
    """'ANTHROPIC_API_KEY in pid 812 (python3), ~/.bashrc:14; GROQ_API_KEY in …' (names, places)."""
    by_name: dict[str, list[str]] = {}
    for finding in findings:
        places = by_name.setdefault(finding.name, [])
        if finding.place not in places:
            places.append(finding.place)
    parts = []
    for name in sorted(by_name):
        places = by_name[name]
        shown = ", ".join(places[:PLACES_SHOWN])
        more = f" and {len(places) - PLACES_SHOWN} more" if len(places) > PLACES_SHOWN else ""
        parts.append(f"{name} in {shown}{more}")
    return "; ".join(parts)


def rules(desired: Desired, key: KeyResolution) -> list[Rule]:
    paths = desired.paths

    def observe() -> ActionFact:
        policy = load_policy(desired.policy)
        found = scan_files(paths.home, policy.files, policy.names, key.key, paths.show)
        scan = scan_processes(policy.names, key.key, uid=os.geteuid(), limit=policy.max_processes)
        found += scan.findings
        caveats = [text for text in (
            scan.skipped,
            f"{scan.unreadable} process(es) could not be read" if scan.unreadable else None,
            f"only the first {scan.scanned} processes were read" if scan.truncated else None,
        ) if text]
        tail = f" ({'; '.join(caveats)})" if caveats else ""
        if not found:
            return ActionFact(True, "none" + tail, "none")
        return ActionFact(
            False,
            describe(found) + tail,
            "none",
            message="these reach AI providers directly, around the LiteLLM gateway (no budget, no "
            "enforcement, no audit): remove them and use the workspace's key",
        )

    return [ActionRule(RULE_ID, "process environments and shell start files", observe, fix=None,
                       title="no raw provider credentials")]
