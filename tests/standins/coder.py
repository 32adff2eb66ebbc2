"""A loopback stand-in of the part of Coder's API the lockdown reads, for tests only.

`GET /api/v2/deployment/config` as coderd answers it: the `Coder-Session-Token` header is
checked, only the Owner and Auditor roles may read the deployment config (403 otherwise, 401 for
an unknown token), and the body has the typed `config` object and the `options` list (each with
its `env` name and `value`), built from the server environment given to the stand-in:

    with run_coder({"CODER_AIBRIDGE_ENABLED": "true"}, tokens={"t-owner": "owner"}) as coder:
        httpx.get(coder.url + "/api/v2/deployment/config", headers={"Coder-Session-Token": "t-owner"})

`renamed=True` answers like a Coder whose AI Bridge became AI Gateway (option env
CODER_AI_GATEWAY_ENABLED, the old name kept as a deprecated second option, default true).
Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

READERS = ("owner", "auditor")


def _bool(value: str | None, default: bool) -> bool:
    return default if value is None else value.strip().lower() == "true"


@dataclass
class CoderStandin:
    env: dict[str, str]
    tokens: dict[str, str]  # token → role
    renamed: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, token)
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def document(self) -> dict[str, Any]:
        gateway_env = "CODER_AI_GATEWAY_ENABLED" if self.renamed else "CODER_AIBRIDGE_ENABLED"
        gateway = self.env.get(gateway_env, self.env.get("CODER_AIBRIDGE_ENABLED"))
        gateway_on = _bool(gateway, default=self.renamed)
        hide = _bool(self.env.get("CODER_HIDE_AI_TASKS"), default=False)
        github = _bool(self.env.get("CODER_OAUTH2_GITHUB_DEFAULT_PROVIDER_ENABLE"), default=True)
        config: dict[str, Any] = {
            "hide_ai_tasks": hide,
            "oauth2": {"github": {"default_provider_enable": github, "client_secret": ""}},
            "access_url": {"scheme": "http", "host": "coder.example"},
        }
        if self.renamed:
            config["ai_gateway"] = {"enabled": gateway_on}
        else:
            config["ai"] = {"bridge": {"enabled": gateway_on}}
        options = [
            {"name": "Hide AI Tasks", "env": "CODER_HIDE_AI_TASKS", "flag": "hide-ai-tasks", "value": hide},
            {
                "name": "OAuth2 GitHub Default Provider Enable",
                "env": "CODER_OAUTH2_GITHUB_DEFAULT_PROVIDER_ENABLE",
                "value": github,
            },
            {"name": "AI Gateway Enabled" if self.renamed else "AIBridge Enabled", "env": gateway_env, "value": gateway_on},
        ]
        if self.renamed:
            options.append({"name": "AIBridge Enabled", "env": "CODER_AIBRIDGE_ENABLED", "value": gateway_on, "hidden": True})
        return {"config": config, "options": options}

    def start(self) -> None:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                token = self.headers.get("Coder-Session-Token")
                standin.requests.append((self.path, token))
                if self.path != "/api/v2/deployment/config":
                    self._send(404, {"message": "Route not found."})
                    return
                role = standin.tokens.get(token or "")
                if role is None:
                    self._send(401, {"message": "You must be logged in to use this endpoint."})
                elif role not in READERS:
                    self._send(403, {"message": "Forbidden."})
                else:
                    self._send(200, standin.document())

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextlib.contextmanager
def run_coder(env: dict[str, str], tokens: dict[str, str], *, renamed: bool = False) -> Iterator[CoderStandin]:
    standin = CoderStandin(dict(env), dict(tokens), renamed)
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()
