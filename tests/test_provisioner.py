"""fetch_key against a real loopback stand-in of the key provisioner (real HTTP, no mocks).

Every call goes through `call()`, which also checks that neither the secret nor any key the
stand-in issued shows up in the exception or in the log lines.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.heavy import missing
from tests.standins.provisioner import KEY_PATH, Standin, run_provisioner
from tests.standins.rawhttp import canned_server, dripping_server
from workspace_agent import provisioner
from workspace_agent.errors import AgentError
from workspace_agent.provisioner import KeyRequest, ProvisionedKey, backoff_ceiling, fetch_key

# Left out of `scripts/test --fast`: each test talks to a provisioner stand-in over loopback.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SECRET = "Prov-Secret-7f3a9c2e1b"
REQUEST = KeyRequest(workspace_id="ws-1", username="alice", workspace_name="demo")


class Outcome:
    def __init__(self, key: ProvisionedKey | None, error: AgentError | None, logs: list[str]):
        self.key = key
        self.error = error
        self.logs = logs
        self.elapsed = 0.0

    @property
    def message(self) -> str:
        assert self.error is not None, f"expected an error, got {self.key!r}"
        return self.error.message


def call(
    url: str,
    *,
    secret: str = SECRET,
    request: KeyRequest = REQUEST,
    standin: Standin | None = None,
    extra_secrets: tuple[str, ...] = (),
    **kwargs: Any,
) -> Outcome:
    """fetch_key, capturing the result or AgentError and the log; asserts nothing leaked."""
    logs: list[str] = []
    kwargs.setdefault("sleep", lambda _s: None)  # retries without waiting unless a test cares
    started = time.monotonic()
    try:
        outcome = Outcome(fetch_key(url, secret, request, log=logs.append, **kwargs), None, logs)
    except AgentError as exc:
        outcome = Outcome(None, exc, logs)
    outcome.elapsed = time.monotonic() - started
    assert logs, "every attempt must leave a log line"
    secrets = [secret, SECRET, *extra_secrets]
    if standin is not None:
        secrets += list(standin.keys.values())
    if outcome.key is not None:
        secrets.append(outcome.key.key)
        assert outcome.key.key not in repr(outcome.key)
    shown = list(logs)
    if outcome.error is not None:
        shown += [str(outcome.error), repr(outcome.error), *map(str, outcome.error.args)]
        assert outcome.error.__cause__ is None and outcome.error.__context__ is None
    for text in shown:
        for secret_text in secrets:
            if secret_text:
                assert secret_text not in text, f"secret leaked into {text!r}"
    return outcome


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FakeTime:
    """A clock that moves only when slept on (plus `tick` per reading), recording sleeps."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now = 1000.0
        self.tick = tick
        self.sleeps: list[tuple[float, float]] = []  # (when, how long)
        self.first: float | None = None  # the first reading: where fetch_key's deadline starts

    def clock(self) -> float:
        self.now += self.tick
        if self.first is None:
            self.first = self.now
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append((self.now, seconds))
        self.now += seconds


# ---------------------------------------------------------------------------------------------
# The contract


def test_new_workspace_gets_a_new_key_201() -> None:
    with run_provisioner(secret=SECRET) as prov:
        out = call(prov.url, standin=prov)
        assert out.key == ProvisionedKey(key=prov.keys["ws-1"], reused=False, attempts=1)
        (path, headers, body) = prov.requests[-1]
        assert path == KEY_PATH
        assert headers["authorization"] == f"Bearer {SECRET}"
        assert headers["content-type"] == "application/json"
        assert body == REQUEST._asdict()
        assert out.logs == ["provisioner attempt 1 succeeded: new key issued"]


def test_restart_gets_the_same_key_200_and_keeps_the_first_level() -> None:
    with run_provisioner(secret=SECRET) as prov:
        first = call(prov.url, standin=prov, request=REQUEST._replace(enforcement_level="design-first"))
        again = call(prov.url, standin=prov, request=REQUEST._replace(enforcement_level="unrestricted"))
        assert first.key is not None and again.key is not None
        assert again.key == ProvisionedKey(key=first.key.key, reused=True, attempts=1)
        info = httpx.get(
            prov.url + "/api/v1/keys/info", headers={"Authorization": f"Bearer {again.key.key}"}
        ).json()
        assert info["info"]["metadata"]["enforcement_level"] == "design-first"  # anti-downgrade
        assert info["info"]["key_alias"] == "workspace-ws-1"


def test_body_is_real_json_whatever_the_workspace_name() -> None:
    name = 'it\'s "quoted" \\back\\slash\\ {"x": 1}\n\ttab ünïcødé 日本 🚀'
    request = KeyRequest(workspace_id='ws-"2"', username="bob\\", workspace_name=name)
    with run_provisioner(secret=SECRET) as prov:
        out = call(prov.url, standin=prov, request=request)
        assert out.key is not None and not out.key.reused
        body = prov.requests[-1].body
        assert isinstance(body, dict), f"the stand-in could not parse {body!r}"
        assert body["workspace_name"] == name
        assert body["workspace_id"] == 'ws-"2"' and body["username"] == "bob\\"
        assert prov.keys['ws-"2"'] == out.key.key


def test_400_says_what_the_server_said_and_is_not_retried() -> None:
    with run_provisioner(secret=SECRET) as prov:
        out = call(prov.url, standin=prov, request=KeyRequest(workspace_id="", username="alice"))
        assert out.message == (
            "the key provisioner refused the request (400): workspace_id and username are required"
        )
        assert len(prov.key_requests()) == 1


def test_401_names_the_secret_and_is_not_retried() -> None:
    with run_provisioner(secret=SECRET) as prov:
        out = call(prov.url, standin=prov, secret="wrong-secret-value")
        assert out.message == (
            "the key provisioner rejected the secret (401): check PROVISIONER_SECRET"
        )
        assert len(prov.key_requests()) == 1
        assert out.logs == ["provisioner attempt 1 failed: HTTP 401: unauthorized; not retrying"]


def test_404_points_at_the_url_and_is_not_retried() -> None:
    with run_provisioner(secret=SECRET) as prov:
        out = call(prov.url + "/api/v1", standin=prov)
        assert "(404)" in out.message and "PROVISIONER_URL" in out.message
        assert len(prov.requests) == 1


def test_base_url_with_user_info_and_slash_still_uses_the_bearer() -> None:
    with run_provisioner(secret=SECRET) as prov:
        url = prov.url.replace("http://", "http://someone:pw@") + "/?x=1"
        out = call(url, standin=prov, extra_secrets=("someone:pw",))
        assert out.key is not None
        assert prov.requests[-1].headers["authorization"] == f"Bearer {SECRET}"


# ---------------------------------------------------------------------------------------------
# Retries


@pytest.mark.parametrize("fail_with", ["502", "reset", "alternate"])
def test_flaky_then_success_counts_attempts(fail_with: str) -> None:
    with run_provisioner(mode="flaky", secret=SECRET, fail_first=2, fail_with=fail_with) as prov:
        out = call(prov.url, standin=prov)
        assert out.key is not None
        assert out.key.attempts == 3 and out.key.key == prov.keys["ws-1"]
        assert len(prov.key_requests()) == 3
        assert len(out.logs) == 3
        assert out.logs[0].startswith("provisioner attempt 1 failed: ")
        assert "; retrying in " in out.logs[0] and out.logs[0].endswith(" s")
        assert out.logs[2] == "provisioner attempt 3 succeeded: new key issued"


def test_retry_log_line_shape() -> None:
    with run_provisioner(mode="flaky", secret=SECRET, fail_first=1) as prov:
        out = call(prov.url, standin=prov)
        first = out.logs[0]
        prefix = "provisioner attempt 1 failed: HTTP 502: Failed to generate key: "
        assert first.startswith(prefix), first
        pause = float(first.rsplit("retrying in ", 1)[1].removesuffix(" s"))
        assert 0 <= pause <= backoff_ceiling(1)


@pytest.mark.slow
def test_502_forever_gives_up_within_the_deadline() -> None:
    with run_provisioner(mode="fail502", secret=SECRET) as prov:
        out = call(prov.url, standin=prov, deadline=2.0, sleep=time.sleep)
        assert out.elapsed < 2.0 + 1.0
        attempts = len(prov.key_requests())
        assert attempts >= 2
        assert out.message.startswith(
            f"could not reach the key provisioner at {prov.url} after {attempts} attempts in "
        )
        assert out.message.endswith(
            ": HTTP 502: Failed to generate key: litellm returned 500 Internal Server Error"
        )
        assert len(out.logs) == attempts and "giving up" in out.logs[-1]


@pytest.mark.slow
def test_hang_is_bounded_by_the_deadline_not_the_attempt_timeout() -> None:
    with run_provisioner(mode="hang", secret=SECRET) as prov:
        out = call(prov.url, standin=prov, deadline=1.5, attempt_timeout=10.0, sleep=time.sleep)
        assert out.elapsed < 1.5 + 1.0
        assert "after 1 attempt in " in out.message
        assert out.message.endswith("no answer within 1.5 s")


@pytest.mark.slow
def test_hang_with_short_attempts_retries_until_the_deadline() -> None:
    with run_provisioner(mode="hang", secret=SECRET) as prov:
        out = call(prov.url, standin=prov, deadline=2.0, attempt_timeout=0.4, sleep=time.sleep)
        assert out.elapsed < 2.0 + 1.0
        assert len(prov.key_requests()) >= 2
        assert "no answer within" in out.message


@pytest.mark.slow
def test_slow_answer_past_the_attempt_timeout_is_a_timeout() -> None:
    with run_provisioner(mode="slow", secret=SECRET, delay=1.0) as prov:
        out = call(prov.url, standin=prov, deadline=1.2, attempt_timeout=0.3, sleep=time.sleep)
        assert out.elapsed < 1.2 + 1.0
        assert "no answer within 0.3 s" in out.logs[0]
        assert out.message.startswith("could not reach the key provisioner")


def test_slow_answer_within_the_attempt_timeout_is_fine() -> None:
    with run_provisioner(mode="slow", secret=SECRET, delay=0.2) as prov:
        out = call(prov.url, standin=prov, attempt_timeout=2.0)
        assert out.key is not None and out.key.attempts == 1


@pytest.mark.slow
def test_connection_refused_is_retried_then_reported() -> None:
    url = closed_port_url()
    out = call(url, deadline=1.2, sleep=time.sleep)
    assert out.elapsed < 1.2 + 1.0
    assert len(out.logs) >= 2
    assert out.message.startswith(f"could not reach the key provisioner at {url} after ")
    assert "cannot connect" in out.message


def test_reset_connection_is_retried_then_reported() -> None:
    fake = FakeTime()
    with run_provisioner(mode="reset", secret=SECRET) as prov:
        out = call(prov.url, standin=prov, deadline=5.0, clock=fake.clock, sleep=fake.sleep)
        attempts = len(prov.key_requests())
        assert attempts >= 2 and len(out.logs) == attempts
        assert f"after {attempts} attempts" in out.message
        assert "connection" in out.message


# ---------------------------------------------------------------------------------------------
# Backoff schedule (clock and sleep injected; the requests are real)


def test_backoff_doubles_from_half_a_second_up_to_eight_and_stops_before_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(provisioner, "_full_jitter", lambda ceiling: ceiling)  # worst case
    fake = FakeTime()
    with run_provisioner(mode="fail502", secret=SECRET) as prov:
        out = call(prov.url, standin=prov, deadline=60.0, clock=fake.clock, sleep=fake.sleep)
        pauses = [s for _when, s in fake.sleeps]
        # 55.5 s of full pauses, then the last one is cut to leave MIN_ATTEMPT_S for attempt 12.
        assert pauses[:-1] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0]
        assert pauses[-1] == pytest.approx(60.0 - 55.5 - provisioner.MIN_ATTEMPT_S)
        assert len(prov.key_requests()) == 12
        assert "after 12 attempts in 59.8 s" in out.message
        assert "leaves no time for another attempt" in out.logs[-1]
        assert out.logs[0].endswith("retrying in 0.5 s")
        assert out.logs[4].endswith("retrying in 8.0 s")


def test_backoff_ceiling() -> None:
    assert [backoff_ceiling(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]
    assert backoff_ceiling(10_000) == 8.0


@pytest.mark.parametrize("tick", [0.0, 0.013, 0.37])
@pytest.mark.parametrize("deadline", [0.3, 1.0, 7.5, 60.0])
def test_never_sleeps_past_the_deadline(tick: float, deadline: float) -> None:
    url = closed_port_url()
    for _ in range(5):  # real jitter: a few draws each
        fake = FakeTime(tick=tick)
        out = call(url, deadline=deadline, clock=fake.clock, sleep=fake.sleep)
        assert out.error is not None and fake.first is not None
        for number, (when, pause) in enumerate(fake.sleeps, start=1):
            assert 0 <= pause <= backoff_ceiling(number)
            assert when + pause <= fake.first + deadline, "slept past the deadline"
            assert when + pause + provisioner.MIN_ATTEMPT_S <= fake.first + deadline + 1e-9
        assert len(out.logs) == len(fake.sleeps) + 1


def test_each_attempt_gets_only_the_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provisioner, "_full_jitter", lambda ceiling: ceiling)
    fake = FakeTime()
    with run_provisioner(mode="hang", secret=SECRET) as prov:
        # Attempt 1 cannot wait longer than the deadline (0.4 s) even with a 10 s attempt
        # timeout; attempt 2 gets what is left after the pause (cut to leave MIN_ATTEMPT_S).
        out = call(prov.url, standin=prov, deadline=0.4, attempt_timeout=10.0,
                   clock=fake.clock, sleep=fake.sleep)
        assert out.elapsed < 0.4 + 0.25 + 0.7
        assert out.logs[0] == (
            "provisioner attempt 1 failed: no answer within 0.4 s; retrying in 0.1 s"
        )
        assert out.logs[1].startswith("provisioner attempt 2 failed: no answer within 0.2 s")
        assert [round(s, 6) for _when, s in fake.sleeps] == [0.15]
        assert "after 2 attempts" in out.message


# ---------------------------------------------------------------------------------------------
# Answers that are not the provisioner's: not retried, and said so


@pytest.mark.parametrize(
    ("mode", "phrase"),
    [
        ("garbage", "with an HTML page instead of JSON ('<html>oops</html>')"),
        ("badjson", "with a body that is not valid JSON (application/json: '{not json')"),
        ("nokey", 'without a "key" field (fields: reused)'),
        ("huge", "with a body larger than 65536 bytes"),
    ],
)
def test_garbage_answers_fail_clearly_without_retrying(mode: str, phrase: str) -> None:
    with run_provisioner(mode=mode, secret=SECRET) as prov:
        out = call(prov.url, standin=prov)
        assert phrase in out.message
        assert out.message.startswith(f"the key provisioner at {prov.url} answered HTTP 20")
        assert "PROVISIONER_URL" in out.message and "not retried" in out.message
        assert len(prov.key_requests()) == 1
        assert out.logs[-1].endswith("; not retrying")


@pytest.mark.parametrize("announced", [False, True])
def test_huge_body_is_never_loaded(announced: bool) -> None:
    with run_provisioner(mode="huge", secret=SECRET, huge_content_length=announced) as prov:
        tracemalloc.start()
        try:
            out = call(prov.url, standin=prov, max_body_bytes=4096)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert "larger than 4096 bytes" in out.message
        assert peak < 4 * 1024 * 1024, f"peak {peak} bytes while reading a 20 MB answer"
        assert out.elapsed < 2.0


# Canned answers from a real loopback server that sends exact bytes: the cases the stand-in has no
# mode for.
KEY = "sk-abcdefghijklmnopqrstuvwxyz012345"


@pytest.mark.parametrize(
    ("status", "body", "reused"),
    [
        (201, {"key": KEY, "reused": False}, False),
        (200, {"key": KEY, "reused": True}, True),
        (201, {"key": KEY}, False),  # absent: a 201 is a new key
        (200, {"key": KEY}, True),  # absent: a 200 is a reused key
        (200, {"key": "x" * 512, "reused": True}, True),
    ],
)
def test_valid_answers(status: int, body: Any, reused: bool) -> None:
    with canned_server(status, body) as server:
        out = call(server.url, extra_secrets=(body["key"],))
    assert out.key == ProvisionedKey(key=body["key"], reused=reused, attempts=1)


@pytest.mark.parametrize(
    ("status", "body", "phrase"),
    [
        (201, {"key": ""}, 'with an empty "key"'),
        (201, {"key": 12345678}, 'with a "key" that is not a string (a int)'),
        (201, {"key": "sk-1234"}, 'with a "key" that does not look like a key (7 characters'),
        (201, {"key": "sk-has space-inside-it"}, 'does not look like a key'),
        (201, {"key": "sk-newline\n-inside-it"}, "does not look like a key"),
        (201, {"key": "x" * 513}, "does not look like a key (513 characters"),
        (201, {"key": KEY, "reused": "no"}, '"reused" field that is not true or false'),
        (200, [KEY], "with JSON that is not an object (a list)"),
        (200, b"", "with an empty body instead of JSON"),
        (200, b"[" * 50_000, "not valid JSON"),
        (204, b"", "answered HTTP 204, not 200 or 201"),
    ],
)
def test_invalid_success_answers(status: int, body: Any, phrase: str) -> None:
    with canned_server(status, body) as server:
        out = call(server.url, extra_secrets=(KEY, "sk-has space-inside-it", "sk-newline\n-inside-it"))
    assert phrase in out.message
    assert len(out.logs) == 1


@pytest.mark.parametrize(
    ("status", "body", "extra", "phrase"),
    [
        (403, {"error": "forbidden"}, None, "forbade the request (403: forbidden)"),
        (405, {"detail": "Method Not Allowed"}, None, "(HTTP 405: Method Not Allowed)"),
        (302, b"", {"location": "https://sso.example/login"},
         "redirect (HTTP 302 to https://sso.example/login)"),
        (400, b"<html>Bad Request</html>", None, "refused the request (400): it gave no reason"),
    ],
)
def test_other_refusals_are_not_retried(
    status: int, body: Any, extra: dict[str, str] | None, phrase: str
) -> None:
    content_type = "text/html" if isinstance(body, bytes) else "application/json"
    with canned_server(status, body, extra, content_type) as server:
        out = call(server.url)
    assert phrase in out.message
    assert len(out.logs) == 1


@pytest.mark.parametrize("status", [408, 429, 500, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    fake = FakeTime()
    body = {"error": {"message": "LiteLLM says no", "type": "x", "code": str(status)}}
    with canned_server(status, body) as server:
        out = call(server.url, deadline=3.0, clock=fake.clock, sleep=fake.sleep)
    assert len(out.logs) >= 2
    assert out.message.endswith(f": HTTP {status}: LiteLLM says no")


def test_server_text_echoing_secrets_is_redacted() -> None:
    leaky = {"error": f"bad token {SECRET} for key {KEY} (sk-anotherkeylikething9)"}
    with canned_server(400, leaky) as server:
        out = call(server.url, extra_secrets=(KEY, "sk-anotherkeylikething9"))
    assert out.message.startswith("the key provisioner refused the request (400): bad token ")


# ---------------------------------------------------------------------------------------------
# Bad configuration: said at once, nothing sent


@pytest.mark.parametrize("url", ["localhost:8100", "ftp://host/", "http://", "", "not a url"])
def test_bad_url_is_refused_before_any_request(url: str) -> None:
    with pytest.raises(AgentError, match="PROVISIONER_URL .* is not an http:// or https:// URL"):
        fetch_key(url, SECRET, REQUEST)


@pytest.mark.parametrize(
    ("secret", "phrase"),
    [
        ("", "PROVISIONER_SECRET is empty"),
        (SECRET + "\n", "a stray newline"),
        ("Prov-Secret-\x07-bell", "control or non-ASCII"),
    ],
)
def test_unusable_secret_is_refused_before_any_request(secret: str, phrase: str) -> None:
    with run_provisioner(secret=SECRET) as prov:
        with pytest.raises(AgentError) as caught:
            fetch_key(prov.url, secret, REQUEST)
        assert phrase in caught.value.message
        assert SECRET not in caught.value.message
        assert prov.requests == []


def test_nonpositive_limits_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        fetch_key("http://x", SECRET, REQUEST, deadline=0)


def test_key_is_not_in_repr() -> None:
    assert KEY not in repr(ProvisionedKey(key=KEY, reused=False, attempts=1))


# ---------------------------------------------------------------------------------------------
# TLS: SSL_CERT_FILE is honoured


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        missing("openssl", "scripts/install-test-deps shells (or apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


def test_tls_trusts_the_ca_named_by_ssl_cert_file(
    self_signed: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", self_signed[0])
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with run_provisioner(secret=SECRET, tls=self_signed) as prov:
        assert prov.url.startswith("https://")
        out = call(prov.url, standin=prov)
        assert out.key is not None and out.key.key == prov.keys["ws-1"]


def test_untrusted_certificate_is_not_retried_and_names_ssl_cert_file(
    self_signed: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)  # the system store: not our CA
    with run_provisioner(secret=SECRET, tls=self_signed) as prov:
        out = call(prov.url, standin=prov)
        assert "TLS certificate" in out.message and "SSL_CERT_FILE" in out.message
        assert len(out.logs) == 1
        assert prov.requests == []


def test_unreadable_ssl_cert_file_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(AgentError, match="SSL_CERT_FILE/SSL_CERT_DIR cannot be loaded"):
        fetch_key("https://provisioner.test", SECRET, REQUEST)


# ---------------------------------------------------------------------------------------------
# The stand-in itself


def test_standin_stops_fast_with_a_request_hanging() -> None:
    prov = Standin(mode="hang", secret=SECRET).start()
    errors: list[BaseException] = []

    def client() -> None:
        try:
            httpx.post(prov.url + KEY_PATH, json={}, timeout=30)
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    while not prov.requests:
        time.sleep(0.01)
    started = time.monotonic()
    prov.stop()
    assert time.monotonic() - started < 0.5
    thread.join(timeout=2)
    assert not thread.is_alive() and errors


def test_standin_info_health_and_levels() -> None:
    with run_provisioner(secret=SECRET) as prov:
        key = call(prov.url, standin=prov,
                   request=REQUEST._replace(enforcement_level="bogus")).key
        assert key is not None
        info = httpx.get(prov.url + "/api/v1/keys/info",
                         headers={"Authorization": f"Bearer {key.key}"})
        assert info.json()["info"]["metadata"]["enforcement_level"] == "standard"
        assert httpx.get(prov.url + "/api/v1/keys/info",
                         headers={"Authorization": "Bearer sk-unknown"}).status_code == 401
        assert httpx.get(prov.url + "/health").json() == {"status": "ok"}
        prov.mode = "fail502"
        assert httpx.get(prov.url + "/health/ready").status_code == 503


def test_standin_runs_as_a_process() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "tests.standins.provisioner", "--port", "0", "--mode", "normal",
         "--secret", SECRET],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line.startswith("LISTENING http://127.0.0.1:")
            out = call(line.split(" ", 1)[1])
            assert out.key is not None and not out.key.reused
        finally:
            proc.terminate()
            assert proc.wait(timeout=5) == 0


# ---------------------------------------------------------------------------------------------
# Workspace identity (docs/identity.md)

AGENT_TOKEN = "3f0c2a5e-9b1d-4c7e-8f6a-1d2e3c4b5a69"


def test_the_agent_token_goes_in_its_own_header_and_never_into_a_message() -> None:
    with run_provisioner(secret=SECRET) as prov:
        out = call(prov.url, standin=prov, agent_token=AGENT_TOKEN, extra_secrets=(AGENT_TOKEN,))
        headers = prov.key_requests()[-1].headers
        assert headers["coder-agent-token"] == AGENT_TOKEN
        assert headers["authorization"] == f"Bearer {SECRET}"  # the platform's contract, unchanged
        assert AGENT_TOKEN not in json.dumps(prov.key_requests()[-1].body)
        # The platform's provisioner does not say it verified anything: the key is unverified.
        assert out.key is not None and out.key.identity == provisioner.UNVERIFIED
        prov.mode = "hang"
        failed = call(prov.url, standin=prov, agent_token=AGENT_TOKEN, extra_secrets=(AGENT_TOKEN,),
                      deadline=0.6, attempt_timeout=0.2)
        assert failed.error is not None


def test_without_an_agent_token_no_identity_header_is_sent() -> None:
    with run_provisioner(secret=SECRET) as prov:
        call(prov.url, standin=prov)
        assert "coder-agent-token" not in prov.key_requests()[-1].headers


def test_a_verified_answer_is_recognised_and_an_unknown_claim_is_not() -> None:
    def answer(identity: object) -> provisioner.ProvisionedKey | provisioner._Failure:
        raw = json.dumps({"key": "sk-Zq8mV3pL0rT6yW1x", "reused": False, "identity": identity}).encode()
        return provisioner._judge(201, "application/json", "", raw, False, 65536, "http://p")

    verified, other, odd = answer("coder-agent-token"), answer("something-else"), answer(7)
    assert isinstance(verified, ProvisionedKey) and verified.identity == provisioner.VERIFIED
    assert isinstance(other, ProvisionedKey) and other.identity == provisioner.UNVERIFIED
    assert isinstance(odd, ProvisionedKey) and odd.identity == provisioner.UNVERIFIED


def test_a_403_names_the_agent_token_among_the_things_to_check() -> None:
    refused = provisioner._judge(403, "application/json", "", json.dumps(
        {"error": "this agent token does not belong to workspace 'ws-1'"}).encode(), False, 65536, "http://p")
    assert isinstance(refused, provisioner._Failure) and refused.fatal is not None
    assert "does not belong to workspace" in refused.fatal and "CODER_AGENT_TOKEN" in refused.fatal


# ---------------------------------------------------------------------------------------------
# The deadline holds against a provisioner that drips its answer (one byte every 0.5 s)


@pytest.mark.slow
@pytest.mark.parametrize("drip_body", [False, True])
def test_a_dripping_provisioner_cannot_stretch_the_deadline(drip_body: bool) -> None:
    with dripping_server(interval=0.5, drip_body=drip_body) as server:
        out = call(server.url, deadline=3.0, attempt_timeout=10.0, sleep=time.sleep)
    assert 3.0 * 0.9 <= out.elapsed <= 3.0 * 1.1, out.elapsed
    assert out.message.startswith(f"could not reach the key provisioner at {server.url} after 1 attempt")
    assert out.message.endswith("no answer within 3.0 s")
