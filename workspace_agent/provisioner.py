"""Get a workspace's LiteLLM virtual key from the key provisioner (see platform.md).

`fetch_key` POSTs the workspace's identity to `{base_url}/api/v1/keys/workspace` with the
shared secret as a bearer token and returns the key the provisioner issued (201) or found
again (200, a restart). With the workspace's Coder agent token it also sends that token in the
`Coder-Agent-Token` header: the hardened provisioner (server/key_provisioner) then asks Coder
whether the caller really is that workspace and says so (`"identity": "coder-agent-token"`);
the platform's provisioner ignores the header (docs/identity.md). Transient trouble (no connection, timeouts, 408/429/5xx such as the
502 the provisioner sends when LiteLLM fails) is retried with exponential backoff and full
jitter until an overall deadline; anything that retrying cannot fix (a wrong secret, a wrong
URL, an answer that is not the provisioner's) fails at once with a sentence saying what to
change. Neither the secret nor the key ever appears in a message, log line or exception.

The HTTP itself is transport.py's: each attempt's time is a deadline over the whole exchange,
so a provisioner that drips its answer cannot hold a start (and its lock) past `deadline`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from workspace_agent import transport
from workspace_agent.errors import AgentError
from workspace_agent.record import Record
from workspace_agent.redact import redact
from workspace_agent.transport import AGENT_TOKEN_HEADER, TransportError

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

KEY_PATH = "/api/v1/keys/workspace"
# How the provisioner knew the caller: Coder vouched for the workspace, or only the shared secret.
VERIFIED = "coder-agent-token"
UNVERIFIED = "provisioner-secret"

# Backoff between attempts: full jitter over min(CAP, BASE * FACTOR ** (attempt - 1)).
BACKOFF_BASE_S = 0.5
BACKOFF_FACTOR = 2.0
BACKOFF_CAP_S = 8.0
# A pause is cut short so that this much of the deadline is left for the next attempt; with
# less than this left, fetch_key gives up instead of pausing.
MIN_ATTEMPT_S = 0.25

KEY_MIN_LEN = 8
KEY_MAX_LEN = 512

_REASON_MAX = 200  # characters of a server's error text shown in a message
_SNIPPET_MAX = 60  # characters of a non-JSON answer shown in a message


class KeyRequest(Record):
    """The body fields of the provisioner's contract (workspace_id and username required)."""

    workspace_id: str
    username: str
    workspace_name: str = ""
    enforcement_level: str = "standard"
    guardrail_action: str = "block"


class ProvisionedKey(Record):
    """The key the provisioner returned; `reused` is True when it already existed."""

    key: str  # never in a repr, a log line or a traceback (see __repr__)
    reused: bool
    attempts: int
    identity: str = UNVERIFIED  # VERIFIED only when the provisioner said Coder confirmed it
    # The hardened provisioner's key lifecycle (issue 18); None from the platform's provisioner.
    generation: int | None = None
    level: str | None = None  # the level the key enforces
    rotated: bool = False  # this answer's key replaced the previous one
    rotated_at: str | None = None  # when the current generation was made by a rotation

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields[1:], self[1:], strict=True))
        return f"ProvisionedKey(key=<hidden>, {shown})"


class _Failure:
    """One failed attempt: `reason` for the log; `fatal` is the final message if not retryable."""

    __slots__ = ("fatal", "reason")

    def __init__(self, reason: str, fatal: str | None = None) -> None:
        self.reason = reason
        self.fatal = fatal


def backoff_ceiling(attempt: int) -> float:
    """The largest pause after failed attempt number `attempt` (1-based), before jitter."""
    exponent = min(max(attempt - 1, 0), 32)  # no float overflow however many attempts
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * BACKOFF_FACTOR**exponent)


def _full_jitter(ceiling: float) -> float:
    """A pause drawn uniformly from [0, ceiling] ("full jitter")."""
    import random

    return random.uniform(0.0, ceiling)


def fetch_key(
    base_url: str,
    secret: str,
    request: KeyRequest,
    *,
    deadline: float = 60.0,
    attempt_timeout: float = 10.0,
    max_body_bytes: int = 65536,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = lambda _m: None,
    agent_token: str = "",
) -> ProvisionedKey:
    """Ask the key provisioner at `base_url` for `request`'s workspace key.

    Retries transient failures until `deadline` seconds have passed (each attempt gets at
    most `attempt_timeout` seconds, for the whole exchange, and never more than the time left;
    a pause is shortened so that MIN_ATTEMPT_S remain for the next attempt, and with less left
    it gives up rather than sleep); raises `AgentError` with an actionable sentence when it
    gives up or when retrying cannot help. `log` gets one line per attempt. TLS trusts the
    system's CA store, or SSL_CERT_FILE/SSL_CERT_DIR when set.
    """
    if deadline <= 0 or attempt_timeout <= 0 or max_body_bytes <= 0:
        raise ValueError("deadline, attempt_timeout and max_body_bytes must be positive")

    def scrub(text: str) -> str:
        return redact(text, [secret, agent_token])

    _check_secret(secret)
    url, shown = _endpoint(base_url, scrub)
    headers = {"Authorization": f"Bearer {secret}", "Accept": "application/json"}
    if agent_token.strip():
        headers[AGENT_TOKEN_HEADER] = agent_token.strip()
    body = request._asdict()

    start = clock()
    end = start + deadline
    attempt = 0
    while True:
        attempt += 1
        timeout = min(attempt_timeout, max(end - clock(), 0.0))
        outcome = _attempt(url, shown, headers, body, timeout, max_body_bytes)
        if isinstance(outcome, ProvisionedKey):
            status = "existing key reused" if outcome.reused else "new key issued"
            log(scrub(f"provisioner attempt {attempt} succeeded: {status}"))
            return outcome._replace(attempts=attempt)
        reason = scrub(outcome.reason)
        if outcome.fatal is not None:
            log(f"provisioner attempt {attempt} failed: {reason}; not retrying")
            raise AgentError(scrub(outcome.fatal))
        room = end - clock() - MIN_ATTEMPT_S  # what a pause may use and leave an attempt
        if room <= 0:
            log(
                f"provisioner attempt {attempt} failed: {reason}; giving up "
                f"(the {deadline:g} s deadline leaves no time for another attempt)"
            )
            elapsed = clock() - start
            plural = "" if attempt == 1 else "s"
            raise AgentError(
                scrub(
                    f"could not reach the key provisioner at {shown} after {attempt} "
                    f"attempt{plural} in {elapsed:.1f} s: {reason}"
                )
            )
        pause = min(_full_jitter(backoff_ceiling(attempt)), room)
        log(f"provisioner attempt {attempt} failed: {reason}; retrying in {pause:.1f} s")
        sleep(pause)


# ---------------------------------------------------------------------------------------------
# One attempt


def _attempt(
    url: str,
    shown: str,
    headers: dict[str, str],
    body: dict[str, Any],
    timeout: float,
    max_body_bytes: int,
) -> ProvisionedKey | _Failure:
    """POST once; return the key, or a `_Failure` (no exception escapes, none is chained)."""
    if timeout <= 0:
        return _Failure("no time left for an attempt")
    try:
        answer = transport.request("POST", url, timeout=timeout, headers=headers, json_body=body,
                                   max_body_bytes=max_body_bytes)
    except TransportError as exc:
        return _transport_failure(exc, timeout, shown)
    return _judge(answer.status, answer.header("content-type"), answer.header("location"),
                  answer.body, answer.too_large, max_body_bytes, shown)


def _transport_failure(exc: TransportError, timeout: float, shown: str) -> _Failure:
    """No answer: retried, except what retrying cannot fix (an untrusted certificate, TLS setup)."""
    if exc.kind == transport.TIMEOUT:
        if exc.phase == "connect":
            return _Failure(f"connecting timed out after {timeout:.1f} s")
        return _Failure(f"no answer within {timeout:.1f} s")
    if exc.kind == transport.TLS_UNTRUSTED:
        return _Failure(
            exc.message,
            fatal=(
                f"the key provisioner at {shown}: {exc.message}: set SSL_CERT_FILE to the CA "
                "bundle that signed its certificate"
            ),
        )
    if exc.kind == transport.TLS_SETUP:
        return _Failure(exc.message, fatal=f"cannot set up TLS for the key provisioner: {exc.message}: fix or unset it")
    if exc.kind == transport.CONNECT:
        return _Failure(exc.message)
    if exc.kind == transport.PROTOCOL:
        return _Failure(
            f"undecodable answer ({exc.message})",
            fatal=(
                f"the key provisioner at {shown} sent an answer that is not HTTP "
                f"({exc.message}): check PROVISIONER_URL (not retried)"
            ),
        )
    if exc.kind == transport.CLOSED:
        return _Failure(f"the connection closed without a complete answer ({exc.message})")
    return _Failure(f"request failed ({exc.message})", fatal=f"talking to the key provisioner at {shown} failed: {exc.message}")


def _judge(
    status: int,
    content_type: str,
    location: str,
    raw: bytes,
    too_big: bool,
    limit: int,
    shown: str,
) -> ProvisionedKey | _Failure:
    """Turn a complete HTTP answer into a key or a failure."""
    if status in (200, 201):
        return _parse_key(status, content_type, raw, too_big, limit, shown)
    detail = "" if too_big else _error_text(raw, content_type)
    said = f": {detail}" if detail else ""
    reason = f"HTTP {status}{said}"
    if status == 408 or status == 429 or 500 <= status <= 599:
        return _Failure(reason)
    if status == 401:
        return _Failure(
            reason, fatal="the key provisioner rejected the secret (401): check PROVISIONER_SECRET"
        )
    if status == 400:
        because = detail or "it gave no reason"
        return _Failure(reason, fatal=f"the key provisioner refused the request (400): {because}")
    if status == 403:
        return _Failure(
            reason,
            fatal=(
                f"the key provisioner at {shown} forbade the request (403{said}): check "
                "CODER_AGENT_TOKEN, PROVISIONER_SECRET and any proxy in front of PROVISIONER_URL"
            ),
        )
    if status == 404:
        return _Failure(
            reason,
            fatal=(
                f"nothing answers POST {KEY_PATH} at {shown} (404): PROVISIONER_URL looks "
                "wrong; it must be the key provisioner's base URL (port 8100 on the platform), "
                f"without {KEY_PATH}"
            ),
        )
    if 300 <= status <= 399:
        where = f" to {_sanitize(location, _REASON_MAX)}" if location else ""
        return _Failure(
            f"HTTP {status} redirect{where}",
            fatal=(
                f"the key provisioner at {shown} answered with a redirect (HTTP {status}{where}): "
                "set PROVISIONER_URL to the final address (a POST is not followed)"
            ),
        )
    if 200 <= status <= 299:
        return _Failure(
            reason,
            fatal=(
                f"the key provisioner at {shown} answered HTTP {status}, not 200 or 201 with a "
                "key: check PROVISIONER_URL (not retried)"
            ),
        )
    return _Failure(
        reason,
        fatal=(
            f"the key provisioner at {shown} refused the request (HTTP {status}{said}): "
            "check PROVISIONER_URL"
        ),
    )


def _parse_key(
    status: int, content_type: str, raw: bytes, too_big: bool, limit: int, shown: str
) -> ProvisionedKey | _Failure:
    """Validate a 200/201 body; any surprise means PROVISIONER_URL is not the provisioner."""
    import json

    def bad(what: str) -> _Failure:
        return _Failure(
            f"HTTP {status} but {what}",
            fatal=(
                f"the key provisioner at {shown} answered HTTP {status} but {what}: "
                "PROVISIONER_URL probably points at something other than the key provisioner "
                "(not retried)"
            ),
        )

    if too_big:
        return bad(f"with a body larger than {limit} bytes, which no key answer is")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        snippet = _sanitize(raw.decode("utf-8", "replace"), _SNIPPET_MAX)
        if "html" in content_type.lower() or snippet.lstrip().startswith("<"):
            return bad(f"with an HTML page instead of JSON ({snippet!r})")
        if not snippet:
            return bad("with an empty body instead of JSON")
        kind = _sanitize(content_type, 60) or "no content type"
        return bad(f"with a body that is not valid JSON ({kind}: {snippet!r})")
    if not isinstance(data, dict):
        return bad(f"with JSON that is not an object (a {type(data).__name__})")
    if "key" not in data:
        names = ", ".join(_sanitize(str(k), 30) for k in list(data)[:8]) or "none"
        return bad(f'without a "key" field (fields: {names})')
    key = data["key"]
    if not isinstance(key, str):
        return bad(f'with a "key" that is not a string (a {type(key).__name__})')
    if not key:
        return bad('with an empty "key"')
    if not _looks_like_key(key):
        return bad(
            f'with a "key" that does not look like a key ({len(key)} characters; a key is '
            f"{KEY_MIN_LEN} to {KEY_MAX_LEN} printable ASCII characters without spaces)"
        )
    reused = data.get("reused", status == 200)
    if not isinstance(reused, bool):
        return bad('with a "reused" field that is not true or false')
    identity = VERIFIED if data.get("identity") == VERIFIED else UNVERIFIED
    generation = data.get("generation")
    level = data.get("level")
    rotated_at = data.get("rotated_at")
    return ProvisionedKey(
        key=key,
        reused=reused,
        attempts=0,
        identity=identity,
        generation=generation if isinstance(generation, int) and not isinstance(generation, bool)
        and 0 <= generation < 1_000_000 else None,
        level=_sanitize(level, 40) or None if isinstance(level, str) else None,
        rotated=data.get("rotated") is True,
        rotated_at=_sanitize(rotated_at, 40) or None if isinstance(rotated_at, str) else None,
    )


def _looks_like_key(key: str) -> bool:
    return KEY_MIN_LEN <= len(key) <= KEY_MAX_LEN and all("!" <= c <= "~" for c in key)


# ---------------------------------------------------------------------------------------------
# Small helpers


def _check_secret(secret: str) -> None:
    """Refuse a secret that cannot be sent as a header, before anything goes on the wire."""
    if not secret:
        raise AgentError("PROVISIONER_SECRET is empty: set it to the key provisioner's secret")
    if secret != secret.strip():
        raise AgentError(
            "PROVISIONER_SECRET starts or ends with whitespace (a stray newline?): remove it"
        )
    if not all(" " <= c <= "~" for c in secret):
        raise AgentError(
            "PROVISIONER_SECRET contains control or non-ASCII characters: check its value"
        )


def _endpoint(base_url: str, scrub: Callable[[str], str]) -> tuple[str, str]:
    """(URL to POST to, the base URL as shown in messages: no user info, query or fragment)."""
    try:
        target = transport.parse_url(base_url)
    except TransportError:
        shown = scrub(_sanitize(base_url, 100))
        raise AgentError(
            f"PROVISIONER_URL {shown!r} is not an http:// or https:// URL: set it to the key "
            "provisioner's base URL (port 8100 on the platform)"
        ) from None
    # User info would be a second credential: it is dropped, with any query and fragment.
    return target.shown + KEY_PATH, target.shown


def _error_text(raw: bytes, content_type: str) -> str:
    """The server's own explanation, if the body carries one (JSON `error`, or short text)."""
    import json

    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        data = None
    text = ""
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):  # LiteLLM's {"error": {"message": ...}}
            err = err.get("message")
        if isinstance(err, str):
            text = err
    elif data is None and raw and "html" not in content_type.lower():
        decoded = raw.decode("utf-8", "replace")
        if not decoded.lstrip().startswith("<"):
            text = decoded
    return _sanitize(text, _REASON_MAX)


def _sanitize(text: str, limit: int) -> str:
    """One printable line of at most `limit` characters."""
    return transport.one_line(text, limit)
