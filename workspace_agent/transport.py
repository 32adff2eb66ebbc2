"""Every HTTP request the agent makes: one total deadline, bounded sizes, no redirects, no leaks.

`request` sends one HTTP/1.1 request over a fresh connection and returns the complete answer, or
raises `TransportError` with a `kind` the caller maps to its own sentence and exit code. Its
`timeout` is a deadline for the whole exchange (name lookup, connect, TLS, sending, status line,
headers, body): before every send and receive the socket's timeout is set to the time left, so
a server that drips one byte at a time cannot stretch it. Header and body sizes are capped
(`Response.too_large` says when the body was over, and none of it was kept); a redirect is
returned as it is, never followed; proxies are not used (the agent's peers are services of the
platform, addressed directly).

Standard library sockets only, `ssl` only for https://: importing this costs a few milliseconds,
where httpx cost 80-116 ms of every bootstrap (see README "Performance").
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Mapping

from workspace_agent.record import Record
from workspace_agent.redact import redact

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

AGENT_TOKEN_HEADER = "Coder-Agent-Token"
# Headers whose values are secrets: never shown, and a warning when they would travel in clear.
SECRET_HEADERS = ("authorization", "coder-agent-token", "coder-session-token")
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
_RECV_BYTES = 64 * 1024
_MAX_INTERIM = 8  # 1xx answers skipped before the real one
_SHOWN_MAX = 200

# TransportError kinds
URL = "url"  # not an http(s) URL, or a header that cannot be sent
TIMEOUT = "timeout"  # the deadline passed (`phase` says whether still connecting)
CONNECT = "connect"  # no connection: refused, unreachable, name not found, TLS failed
TLS_UNTRUSTED = "tls-untrusted"  # the server's certificate is not trusted
TLS_SETUP = "tls-setup"  # SSL_CERT_FILE / SSL_CERT_DIR cannot be loaded
CLOSED = "closed"  # the connection broke or closed before the answer was complete
PROTOCOL = "protocol"  # what came back is not HTTP/1.x


class TransportError(Exception):
    """No complete answer; `message` is one redacted line, `kind` one of the constants above."""

    def __init__(self, kind: str, message: str, phase: str = "answer") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.phase = phase  # "connect" (lookup, connect, TLS) or "answer" (sending, receiving)


class Response(Record):
    """A complete answer. `headers` have lower-case names; `body` is empty when `too_large`."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    too_large: bool
    elapsed_s: float

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


class Target(Record):
    """A parsed base URL: where to connect, and how to name it in a sentence."""

    scheme: str
    host: str
    port: int
    path: str  # without a trailing slash; "" for the root
    shown: str  # scheme://host[:port]/path: no user info, query or fragment

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def user_agent() -> str:
    from workspace_agent import __version__

    return f"workspace-agent/{__version__}"


def one_line(text: str, limit: int = _SHOWN_MAX) -> str:
    """One printable line of at most `limit` characters (server text, exception text)."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def reason(exc: BaseException) -> str:
    """The innermost OS reason of a failure ("Connection refused"), else its text, one line."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return one_line(current.strerror)
        current = current.__cause__ or current.__context__
    return one_line(str(exc)) or type(exc).__name__


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: a secret sent there in clear never leaves the machine."""
    host = host.strip("[]").lower().rstrip(".")
    if host in ("localhost", "::1") or host.endswith(".localhost"):
        return True
    parts = host.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts)


def parse_url(url: str) -> Target:
    """An http:// or https:// base URL; TransportError(URL) otherwise. User info is dropped."""
    from urllib.parse import urlsplit

    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname or ""
    except ValueError:
        parts, port, host = None, None, ""
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise TransportError(URL, f"{one_line(text, 100)!r} is not an http:// or https:// URL", "connect")
    if any(c.isspace() or not c.isprintable() for c in host):
        raise TransportError(URL, f"{one_line(text, 100)!r} has an unusable host name", "connect")
    default = 443 if parts.scheme == "https" else 80
    path = parts.path.rstrip("/")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != default:
        netloc += f":{port}"
    return Target(parts.scheme, host, port or default, path, f"{parts.scheme}://{netloc}{path}")


# ---------------------------------------------------------------------------------------------
# The cleartext warning

_warned: set[str] = set()


def _stderr_warning(message: str) -> None:
    import sys

    try:
        sys.stderr.write(f"workspace-agent: warning: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


warning_sink = _stderr_warning  # replaced by tests; the CLI keeps stderr


def _warn_cleartext(target: Target, headers: Mapping[str, str]) -> None:
    """Once per process and host: a secret is about to cross the network unencrypted."""
    if target.scheme != "http" or target.loopback:
        return
    sent = [name for name, value in headers.items() if name.lower() in SECRET_HEADERS and value]
    where = f"{target.host}:{target.port}"
    if not sent or where in _warned:
        return
    _warned.add(where)
    names = ", ".join(sorted(sent))
    warning_sink(
        f"sending a secret ({names}) over cleartext http:// to {where}: anyone on that network "
        "path can read it; use https:// unless the path is a private network you trust"
    )


# ---------------------------------------------------------------------------------------------
# One request


def request(
    method: str,
    url: str,
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    json_body: Any = None,
    params: Mapping[str, str] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_header_bytes: int = MAX_HEADER_BYTES,
    secrets: Iterable[str] = (),
) -> Response:
    """Send one request to `url` (a full URL) and read the whole answer within `timeout` seconds.

    `json_body` is serialised with the Content-Type set; `secrets` (with every secret header's
    value) are masked in any error message.
    """
    if timeout <= 0 or max_body_bytes < 0 or max_header_bytes <= 0:
        raise ValueError("timeout and max_header_bytes must be positive, max_body_bytes not negative")
    started = time.monotonic()
    end = started + timeout
    given = dict(headers or {})
    hidden = [*secrets, *(v for k, v in given.items() if k.lower() in SECRET_HEADERS)]
    hidden += [v.split(" ", 1)[1] for k, v in given.items() if k.lower() == "authorization" and " " in v]

    def scrub(text: str) -> str:
        return redact(text, hidden)

    target, problem = None, None
    try:
        target = parse_url(url)
    except TransportError as exc:
        problem = TransportError(exc.kind, scrub(exc.message), exc.phase)
    if target is None:  # raised outside the handler: the unredacted error is not its context
        raise problem or TransportError(URL, "no URL", "connect")
    if json_body is not None:
        import json

        body = json.dumps(json_body).encode("utf-8")
        given.setdefault("Content-Type", "application/json")
    _warn_cleartext(target, given)
    conn = None
    try:
        head = _request_head(method, target, url, given, body, params, scrub)
        conn = _connect(target, end, timeout)
        _send(conn, head + (body or b""), end, timeout)
        status, answer_headers, raw, too_large = _read_answer(conn, method, end, timeout,
                                                              max_header_bytes, max_body_bytes)
    except TransportError as exc:
        problem = TransportError(exc.kind, scrub(exc.message), exc.phase)
    finally:
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass
    if problem is not None:  # raised here: no OS exception chained to it
        raise problem
    return Response(status, answer_headers, raw, too_large, time.monotonic() - started)


def _request_head(method: str, target: Target, url: str, headers: dict[str, str], body: bytes | None,
                  params: Mapping[str, str] | None, scrub: Any) -> bytes:
    from urllib.parse import urlencode, urlsplit

    parts = urlsplit(url.strip())
    path = parts.path or "/"
    query = "&".join(q for q in (parts.query, urlencode(params) if params else "") if q)
    if query:
        path += "?" + query
    host = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != (443 if target.scheme == "https" else 80):
        host += f":{target.port}"
    lines = {"host": ("Host", host), "user-agent": ("User-Agent", user_agent()),
             "accept-encoding": ("Accept-Encoding", "identity"),  # the size caps apply to the wire
             "connection": ("Connection", "close")}
    for name, value in headers.items():
        lines[name.lower()] = (name, value)
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines["content-length"] = ("Content-Length", str(len(body or b"")))
    out = [f"{method} {path} HTTP/1.1"]
    for name, value in lines.values():
        if any(c in name + value for c in "\r\n\0") or not name.isascii() or not value.isascii():
            raise TransportError(URL, scrub(f"the {name} header cannot be sent (a line break or "
                                            "non-ASCII character in its value)"), "connect")
        out.append(f"{name}: {value}")
    if any(c in path for c in " \r\n\0"):
        raise TransportError(URL, scrub(f"the path {one_line(path, 100)!r} cannot be sent"), "connect")
    return ("\r\n".join(out) + "\r\n\r\n").encode("ascii")


def _left(end: float, timeout: float, phase: str) -> float:
    left = end - time.monotonic()
    if left <= 0:
        what = "connecting took" if phase == "connect" else "no complete answer within"
        raise TransportError(TIMEOUT, f"{what} {timeout:g} s", phase)
    return left


def _resolve(host: str, port: int, end: float, timeout: float) -> list[Any]:
    """getaddrinfo within the deadline (it has no timeout of its own: a thread waits for it)."""
    # An ASCII name goes as bytes: a str would load the IDNA codec (3 modules, ~1 ms) to say the same.
    name: str | bytes = host.encode("ascii") if host.isascii() else host
    try:  # a literal address needs no lookup
        return socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    import threading

    found: list[Any] = []
    failed: list[BaseException] = []

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(name, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            failed.append(exc)

    worker = threading.Thread(target=lookup, name="resolve", daemon=True)
    worker.start()
    worker.join(_left(end, timeout, "connect"))
    if worker.is_alive():
        raise TransportError(TIMEOUT, f"looking up {host} took more than {timeout:g} s", "connect")
    if failed or not found:
        why = reason(failed[0]) if failed else "no address"
        raise TransportError(CONNECT, f"cannot find host {host!r} ({why})", "connect")
    return found


def _connect(target: Target, end: float, timeout: float) -> socket.socket:
    context = _tls_context() if target.scheme == "https" else None
    last: BaseException | None = None
    for family, kind, proto, _name, address in _resolve(target.host, target.port, end, timeout):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_left(end, timeout, "connect"))
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if context is None:
                return sock
            return _handshake(context, sock, target, end, timeout)
        except TimeoutError:
            sock.close()
            raise TransportError(TIMEOUT, f"connecting took more than {timeout:g} s", "connect") from None
        except TransportError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            last = exc
    raise TransportError(CONNECT, f"cannot connect ({reason(last) if last else 'no address'})", "connect")


def _handshake(context: Any, sock: socket.socket, target: Target, end: float, timeout: float) -> socket.socket:
    import ssl

    tls = context.wrap_socket(sock, server_hostname=target.host, do_handshake_on_connect=False)
    try:
        tls.settimeout(_left(end, timeout, "connect"))  # CPython bounds the whole handshake by it
        tls.do_handshake()
    except ssl.SSLCertVerificationError as exc:
        tls.close()
        why = one_line(exc.verify_message or str(exc))
        raise TransportError(TLS_UNTRUSTED, f"TLS certificate not trusted ({why})", "connect") from None
    except TimeoutError:
        tls.close()
        raise TransportError(TIMEOUT, f"the TLS handshake took more than {timeout:g} s", "connect") from None
    except (ssl.SSLError, OSError) as exc:
        tls.close()
        raise TransportError(CONNECT, f"the TLS handshake failed ({reason(exc)})", "connect") from None
    return tls


_contexts: dict[tuple[str | None, str | None], Any] = {}


def _tls_context() -> Any:
    """The system's trust store; SSL_CERT_FILE / SSL_CERT_DIR, when set, must load."""
    import os

    cafile, capath = os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None
    if (cafile, capath) in _contexts:
        return _contexts[cafile, capath]
    import ssl

    context = ssl.create_default_context()
    if cafile or capath:
        try:
            context.load_verify_locations(cafile=cafile, capath=capath)
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(
                TLS_SETUP,
                f"the CA bundle named by SSL_CERT_FILE/SSL_CERT_DIR cannot be loaded ({reason(exc)})",
                "connect",
            ) from None
    _contexts[cafile, capath] = context
    return context


def _send(sock: socket.socket, data: bytes, end: float, timeout: float) -> None:
    view = memoryview(data)
    while view:
        try:
            sock.settimeout(_left(end, timeout, "answer"))
            sent = sock.send(view[:_RECV_BYTES])
        except TimeoutError:
            raise TransportError(TIMEOUT, f"no complete answer within {timeout:g} s") from None
        except OSError as exc:
            raise TransportError(CLOSED, f"the connection failed while sending ({reason(exc)})") from None
        view = view[sent:]


class _Reader:
    """Buffered reads from the socket, each bounded by the time left."""

    def __init__(self, sock: socket.socket, end: float, timeout: float) -> None:
        self.sock, self.end, self.timeout = sock, end, timeout
        self.buffer = bytearray()
        self.closed = False

    def fill(self) -> bool:
        """Receive once more; False when the server closed the connection."""
        if self.closed:
            return False
        try:
            self.sock.settimeout(_left(self.end, self.timeout, "answer"))
            data = self.sock.recv(_RECV_BYTES)
        except TimeoutError:
            raise TransportError(TIMEOUT, f"no complete answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise TransportError(CLOSED, f"the connection failed ({reason(exc)})") from None
        if not data:
            self.closed = True
            return False
        self.buffer += data
        return True

    def until(self, marker: bytes, limit: int, what: str) -> bytes:
        """Everything up to and including `marker`, at most `limit` bytes."""
        start = 0
        while True:
            found = self.buffer.find(marker, start)
            if found >= 0 and found + len(marker) <= limit:
                out = bytes(self.buffer[: found + len(marker)])
                del self.buffer[: found + len(marker)]
                return out
            if len(self.buffer) >= limit:
                raise TransportError(PROTOCOL, f"the {what} is larger than {limit} bytes")
            start = max(0, len(self.buffer) - len(marker) + 1)
            if not self.fill():
                raise TransportError(CLOSED, f"the connection closed in the middle of the {what}")

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self.fill():
                raise TransportError(CLOSED, "the connection closed before the whole body arrived")
        out = bytes(self.buffer[:count])
        del self.buffer[:count]
        return out


def _read_answer(sock: socket.socket, method: str, end: float, timeout: float, max_header: int,
                 max_body: int) -> tuple[int, dict[str, str], bytes, bool]:
    reader = _Reader(sock, end, timeout)
    for _ in range(_MAX_INTERIM):
        status, headers = _read_head(reader, max_header)
        if not 100 <= status <= 199:
            break
    else:
        raise TransportError(PROTOCOL, f"more than {_MAX_INTERIM} interim (1xx) answers")
    if method == "HEAD" or status in (204, 304):
        return status, headers, b"", False
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, too_large = _read_chunked(reader, max_body, max_header)
        return status, headers, body, too_large
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise TransportError(PROTOCOL, f"the Content-Length {one_line(declared, 40)!r} is not a number")
        if int(declared) > max_body:
            return status, headers, b"", True
        return status, headers, reader.exactly(int(declared)), False
    while len(reader.buffer) <= max_body and reader.fill():  # no length: it ends at close
        pass
    if len(reader.buffer) > max_body:
        return status, headers, b"", True
    return status, headers, bytes(reader.buffer), False


def _read_head(reader: _Reader, limit: int) -> tuple[int, dict[str, str]]:
    raw = reader.until(b"\r\n\r\n", limit, "status line and headers")
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit() or rest[3:4] not in ("", " "):
        raise TransportError(PROTOCOL, f"the answer is not HTTP ({one_line(lines[0], 60)!r})")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise TransportError(PROTOCOL, f"a malformed header line ({one_line(line, 60)!r})")
        key, value = name.lower(), value.strip()
        if key == "content-length" and headers.get(key, value) != value:
            raise TransportError(PROTOCOL, "two different Content-Length headers")
        headers[key] = f"{headers[key]}, {value}" if key in headers and key != "content-length" else value
    return int(code), headers


def _read_chunked(reader: _Reader, max_body: int, max_header: int) -> tuple[bytes, bool]:
    body = bytearray()
    while True:
        line = reader.until(b"\r\n", 1024, "chunk size line")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise TransportError(PROTOCOL, f"a malformed chunk size {one_line(size_text.decode('latin-1'), 40)!r}") from None
        if size < 0:
            raise TransportError(PROTOCOL, "a negative chunk size")
        if size == 0:
            trailer = reader.until(b"\r\n", max_header, "trailer")
            while trailer != b"\r\n":
                trailer = reader.until(b"\r\n", max_header, "trailer")
            return bytes(body), False
        if len(body) + size > max_body:
            return b"", True
        body += reader.exactly(size)
        if reader.exactly(2) != b"\r\n":
            raise TransportError(PROTOCOL, "a chunk not followed by CRLF")
