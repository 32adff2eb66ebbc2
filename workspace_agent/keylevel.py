"""The enforcement level stored on the virtual key, compared with the level the template asks for.

The provisioner keeps a key's first level (anti-downgrade): a workspace restarted with a stricter
level still gets its old key and its old level, and LiteLLM enforces the key's level. The agent
cannot fix that (only an admin rotating the key can), so this is a report-only rule,
`key.enforcement-level`: drift, with the key's level before → the requested level after.

Learning the key's level needs the network (GET {provisioner}/api/v1/keys/info with the key), so
only reporting fetches it (`refresh`, short timeout, best effort) and keeps the answer in a small
cache tied to the key (by hash, never the key itself). `rules()` reads that cache, so plan, check
and bootstrap show the same rule without touching the network; with nothing known there is no
rule rather than a guess.
"""

from __future__ import annotations

import json
import time

from workspace_agent import fsio
from workspace_agent.digest import sha256_hex
from workspace_agent.errors import AgentError
from workspace_agent.paths import Paths
from workspace_agent.plan import ActionFact, ActionRule, Rule
from workspace_agent.redact import mask, redact

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:  # pragma: no cover
    from workspace_agent.desired import Desired
    from workspace_agent.keysource import KeyResolution

RULE_ID = "key.enforcement-level"
INFO_PATH = "/api/v1/keys/info"
FETCH_TIMEOUT_S = 3.0
_MAX_LEVEL_LEN = 50
_MAX_INFO_BYTES = 256 * 1024


def key_id(key: str) -> str:
    """A stable, non-reversible name for a key (what the cache is tied to)."""
    return sha256_hex(key.encode("utf-8"))[:24]


def cached_record(paths: Paths, key: str) -> dict[str, Any]:
    """What is known about this very key ({} for another key or nothing): `enforcement_level`,
    and from the provisioner's answer `generation`, `rotated_at` (issue 18)."""
    try:
        fact = fsio.read_fact(paths.key_level_file, max_bytes=16 * 1024)
        data = json.loads(fact.text) if fact.text is not None else None
    except (AgentError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("key_id") == key_id(key) else {}


def remember(paths: Paths, key: str, *, level: str | None, generation: int | None,
             rotated_at: str | None) -> str | None:
    """Keep what the provisioner said about the key it handed out; a note when it cannot.
    Nothing is written when the record already says so (a second start changes nothing)."""
    known = cached_record(paths, key)
    if known and (known.get("enforcement_level"), known.get("generation"), known.get("rotated_at")) == (
            level, generation, rotated_at):
        return None
    record = {
        "key_id": key_id(key),
        "enforcement_level": level,
        "generation": generation,
        "rotated_at": rotated_at,
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    }
    try:
        fsio.atomic_write(paths.key_level_file, json.dumps(record) + "\n", 0o600)
    except AgentError as exc:
        return f"could not remember the key's generation: {exc.message}"
    return None


def cached_level(paths: Paths, key: str) -> str | None:
    """The level last learned for this very key, or None (never learned, or another key)."""
    try:
        fact = fsio.read_fact(paths.key_level_file, max_bytes=16 * 1024)
    except AgentError:
        return None
    if fact.text is None:
        return None
    try:
        data = json.loads(fact.text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("key_id") != key_id(key):
        return None
    from workspace_agent.keysource import shown_word  # loaded with the key already

    return shown_word(data.get("enforcement_level"), _MAX_LEVEL_LEN)


def rules(desired: Desired, key: KeyResolution) -> list[Rule]:
    """The report-only rule, when the key's level is known for the current key."""
    if not key.key or cached_level(desired.paths, key.key) is None:
        return []
    current_key, requested, paths = key.key, desired.config.enforcement_level, desired.paths

    def observe() -> ActionFact:
        level = cached_level(paths, current_key)
        if level is None:  # the cache went away between rules() and observe()
            raise AgentError("the key's enforcement level is no longer known; run `workspace-agent report`")
        if level == requested:
            return ActionFact(True, level, requested)
        return ActionFact(False, level, requested, mismatch_message(level, requested))

    return [ActionRule(RULE_ID, f"virtual key {mask(current_key)}", observe, None, title="enforcement level on the key")]


def mismatch_message(on_key: str, requested: str) -> str:
    return (
        f"the key enforces {on_key!r} but the template asks for {requested!r}; the provisioner keeps a "
        "key's level when asked for a less strict one (anti-downgrade): an admin approves the lower "
        "level (`workspace-key-provisioner approve-level`; with the platform's provisioner, deletes "
        "the LiteLLM key) and the next start gets a rotated key"
    )


def refresh(paths: Paths, provisioner_url: str, key: str, *,
            timeout: float = FETCH_TIMEOUT_S) -> tuple[str | None, str | None]:
    """Ask the provisioner for the key's level and cache it: (level, note on failure). Never raises."""
    if timeout <= 0:
        return None, f"could not learn the key's enforcement level from {provisioner_url}: no time left"
    level, problem = fetch_level(provisioner_url, key, timeout=timeout)
    if level is None:
        return None, f"could not learn the key's enforcement level from {provisioner_url}: {problem}"
    known = cached_record(paths, key)  # keep the generation the provisioner told bootstrap
    record = {
        "key_id": key_id(key),
        "enforcement_level": level,
        "generation": known.get("generation"),
        "rotated_at": known.get("rotated_at"),
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    }
    try:
        fsio.atomic_write(paths.key_level_file, json.dumps(record) + "\n", 0o600)
    except AgentError as exc:
        return level, f"could not remember the key's enforcement level: {exc.message}"
    return level, None


def fetch_level(provisioner_url: str, key: str, *, timeout: float = FETCH_TIMEOUT_S) -> tuple[str | None, str]:
    """GET {provisioner}/api/v1/keys/info with the key → info.metadata.enforcement_level."""
    from workspace_agent import transport  # only reporting fetches: plan/check never load it

    try:
        answer = transport.request(
            "GET", provisioner_url.rstrip("/") + INFO_PATH, timeout=timeout,
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
            max_body_bytes=_MAX_INFO_BYTES,
        )
    except transport.TransportError as exc:
        if exc.kind == transport.TIMEOUT:
            return None, f"no answer within {timeout:g} s"
        return None, redact(exc.message, [key])
    if answer.too_large:
        return None, "its answer was too large"
    if answer.status != 200:
        return None, f"it answered HTTP {answer.status}"
    try:
        body: Any = json.loads(answer.body)
    except (ValueError, RecursionError):
        return None, "its answer was not JSON"
    return level_from_info(body)


def level_from_info(body: Any) -> tuple[str | None, str]:
    """Pure: the level inside a LiteLLM key-info answer, or None and why."""
    info = body.get("info") if isinstance(body, dict) else None
    metadata = info.get("metadata") if isinstance(info, dict) else None
    level = metadata.get("enforcement_level") if isinstance(metadata, dict) else None
    from workspace_agent.keysource import shown_word

    if shown_word(level, _MAX_LEVEL_LEN) is None:
        return None, "its answer has no info.metadata.enforcement_level"
    return level, ""
