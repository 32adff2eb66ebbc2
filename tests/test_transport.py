"""transport.request against real loopback servers: the deadline is total, sizes are capped,
redirects are not followed, secrets never show, cleartext secrets are warned about once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.standins.rawhttp import canned_server, dripping_server, elapsed
from tests.standins.stall import closed_port, stalled_server
from workspace_agent import __version__, transport
from workspace_agent.transport import TransportError

SECRET = "Bearer-Secret-5e1f0c9a7b"


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    seen: list[str] = []
    monkeypatch.setattr(transport, "warning_sink", seen.append)
    monkeypatch.setattr(transport, "_warned", set())
    yield seen


# ---------------------------------------------------------------------------------------------
# The deadline is a deadline


@pytest.mark.slow
@pytest.mark.parametrize("drip_body", [False, True])
def test_a_dripping_server_cannot_stretch_the_deadline(drip_body: bool) -> None:
    with dripping_server(interval=0.5, drip_body=drip_body) as server:
        took, result = elapsed(transport.request, "GET", server.url + "/x", timeout=3.0)
    assert isinstance(result, TransportError), result
    assert result.kind == transport.TIMEOUT and result.phase == "answer"
    assert result.message == "no complete answer within 3 s"
    assert 3.0 * 0.9 <= took <= 3.0 * 1.1, took


def test_a_server_that_never_answers_times_out_on_time() -> None:
    with stalled_server() as url:
        took, result = elapsed(transport.request, "POST", url, timeout=0.6, json_body={"a": 1})
    assert isinstance(result, TransportError) and result.kind == transport.TIMEOUT
    assert 0.6 * 0.9 <= took <= 0.6 * 1.1 + 0.05, took


def test_connection_refused_is_a_connect_error() -> None:
    took, result = elapsed(transport.request, "GET", closed_port(), timeout=2.0)
    assert isinstance(result, TransportError)
    assert result.kind == transport.CONNECT and result.phase == "connect"
    assert result.message == "cannot connect (Connection refused)"
    assert took < 1.0


# ---------------------------------------------------------------------------------------------
# What goes out, what comes back


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self._echo(b"")

    def do_POST(self) -> None:  # noqa: N802
        self._echo(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _echo(self, body: bytes) -> None:
        data = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                           "body": body.decode()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")  # the client must put the chunks together
        self.end_headers()
        for start in range(0, len(data), 7):
            piece = data[start:start + 7]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_request_sends_the_user_agent_json_and_params_and_reads_chunks(echo: str) -> None:
    answer = transport.request("POST", echo + "/api/x?a=1", timeout=5, json_body={"name": "日本"},
                               params={"b": "two words"}, headers={"Authorization": f"Bearer {SECRET}"})
    assert answer.status == 200 and not answer.too_large
    seen = json.loads(answer.body)
    assert seen["path"] == "/api/x?a=1&b=two+words"
    assert seen["headers"]["user-agent"] == f"workspace-agent/{__version__}"
    assert seen["headers"]["authorization"] == f"Bearer {SECRET}"
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["accept-encoding"] == "identity"
    assert json.loads(seen["body"]) == {"name": "日本"}
    assert answer.header("Content-Type") == "application/json"


def test_redirects_are_returned_not_followed() -> None:
    with canned_server(302, b"", {"Location": "http://127.0.0.1:9/elsewhere"}) as server:
        answer = transport.request("POST", server.url + "/k", timeout=3, json_body={})
    assert answer.status == 302 and answer.header("location") == "http://127.0.0.1:9/elsewhere"
    assert server.connections == 1 and len(server.requests) == 1


def test_interim_answers_are_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"
    with canned_server(0, raw=raw) as server:
        answer = transport.request("GET", server.url, timeout=3)
    assert (answer.status, answer.body) == (201, b"{}")


def test_a_body_without_a_length_ends_at_close() -> None:
    with canned_server(0, raw=b"HTTP/1.0 200 OK\r\n\r\nhello") as server:
        answer = transport.request("GET", server.url, timeout=3)
    assert (answer.status, answer.body, answer.too_large) == (200, b"hello", False)


# ---------------------------------------------------------------------------------------------
# Size caps


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_a_body_over_the_cap_is_flagged_and_not_kept(framing: str) -> None:
    body = b"x" * 5000
    if framing == "length":
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + body
    elif framing == "chunked":
        chunk = b"800\r\n" + body[:2048] + b"\r\n"
        raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n"
    else:
        raw = b"HTTP/1.1 200 OK\r\n\r\n" + body
    with canned_server(0, raw=raw) as server:
        answer = transport.request("GET", server.url, timeout=3, max_body_bytes=4096)
    assert answer.status == 200 and answer.too_large and answer.body == b""


def test_a_body_at_the_cap_is_kept() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n" + b"y" * 4096
    with canned_server(0, raw=raw) as server:
        answer = transport.request("GET", server.url, timeout=3, max_body_bytes=4096)
    assert answer.body == b"y" * 4096 and not answer.too_large


def test_headers_over_the_cap_are_a_protocol_error() -> None:
    raw = b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"h" * 10_000 + b"\r\n\r\n"
    with canned_server(0, raw=raw) as server:
        took, result = elapsed(transport.request, "GET", server.url, timeout=3, max_header_bytes=8192)
    assert isinstance(result, TransportError) and result.kind == transport.PROTOCOL
    assert "larger than 8192 bytes" in result.message
    assert took < 1.0


@pytest.mark.parametrize(
    ("raw", "phrase"),
    [
        (b"<html>not http</html>\r\n\r\n", "the answer is not HTTP"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "a malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "is not a number"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "two different Content-Length"),
    ],
)
def test_answers_that_are_not_http_are_protocol_errors(raw: bytes, phrase: str) -> None:
    with canned_server(0, raw=raw) as server:
        result = elapsed(transport.request, "GET", server.url, timeout=3)[1]
    assert isinstance(result, TransportError) and result.kind == transport.PROTOCOL
    assert phrase in result.message


def test_a_short_body_is_a_closed_connection() -> None:
    with canned_server(0, raw=b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort") as server:
        result = elapsed(transport.request, "GET", server.url, timeout=3)[1]
    assert isinstance(result, TransportError) and result.kind == transport.CLOSED


# ---------------------------------------------------------------------------------------------
# Secrets


def test_a_secret_never_shows_in_an_error(echo: str) -> None:
    with pytest.raises(TransportError) as caught:
        transport.request("GET", echo, timeout=3, headers={"Authorization": f"Bearer {SECRET}\r\nX: y"})
    assert SECRET not in caught.value.message and "cannot be sent" in caught.value.message
    with pytest.raises(TransportError) as bad_url:
        transport.request("GET", f"ftp://user:{SECRET}@host/", timeout=3, secrets=[SECRET])
    assert SECRET not in bad_url.value.message and bad_url.value.kind == transport.URL
    assert bad_url.value.__cause__ is None and bad_url.value.__context__ is None


def test_cleartext_secret_to_another_host_is_warned_about_once(warnings: list[str]) -> None:
    target = transport.parse_url("http://key-provisioner:8100")
    transport._warn_cleartext(target, {"Authorization": f"Bearer {SECRET}"})
    transport._warn_cleartext(target, {"Authorization": f"Bearer {SECRET}"})
    assert len(warnings) == 1
    assert "cleartext http:// to key-provisioner:8100" in warnings[0] and SECRET not in warnings[0]
    transport._warn_cleartext(transport.parse_url("http://other:80"), {"Coder-Agent-Token": "t"})
    assert len(warnings) == 2


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("https://key-provisioner:8100", {"Authorization": "Bearer x"}),  # encrypted
        ("http://127.0.0.1:8100", {"Authorization": "Bearer x"}),  # never leaves the machine
        ("http://localhost:8100", {"Authorization": "Bearer x"}),
        ("http://[::1]:8100", {"Authorization": "Bearer x"}),
        ("http://key-provisioner:8100", {"Accept": "application/json"}),  # no secret
        ("http://key-provisioner:8100", {"Authorization": ""}),
    ],
)
def test_no_warning_without_a_cleartext_secret(warnings: list[str], url: str, headers: dict[str, str]) -> None:
    transport._warn_cleartext(transport.parse_url(url), headers)
    assert warnings == []


def test_a_real_loopback_request_with_a_secret_does_not_warn(warnings: list[str], echo: str) -> None:
    transport.request("GET", echo, timeout=3, headers={"Authorization": f"Bearer {SECRET}"})
    assert warnings == []


# ---------------------------------------------------------------------------------------------
# URLs


@pytest.mark.parametrize(
    ("url", "shown", "port"),
    [
        ("http://h:8100/", "http://h:8100", 8100),
        ("https://user:pw@h/base/?q=1#f", "https://h/base", 443),
        ("http://[::1]:81/x", "http://[::1]:81/x", 81),
        ("  http://H:80  ", "http://h", 80),
    ],
)
def test_parse_url(url: str, shown: str, port: int) -> None:
    target = transport.parse_url(url)
    assert (target.shown, target.port) == (shown, port)


@pytest.mark.parametrize("url", ["localhost:8100", "ftp://h/", "http://", "", "not a url", "http://h:99999"])
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(TransportError) as caught:
        transport.parse_url(url)
    assert caught.value.kind == transport.URL


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        transport.request("GET", "http://127.0.0.1:1", timeout=0)


def test_is_loopback() -> None:
    assert all(transport.is_loopback(h) for h in ("127.0.0.1", "127.9.8.7", "localhost", "::1", "[::1]", "a.localhost"))
    assert not any(transport.is_loopback(h) for h in ("128.0.0.1", "127.0.0", "localhost.example", "10.0.0.1"))


def test_proxy_variables_are_not_used(echo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The peers are the platform's own services: a proxy meant for the internet is not in the way."""
    dead = closed_port()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert transport.request("GET", echo + "/direct", timeout=3).status == 200
