"""A loopback OpenAI-compatible model server that records what it was sent: "the model".

A LiteLLM model entry with `api_base: <url>/v1` sends its requests here, so a test sees the
exact body the proxy forwarded (after every hook), not what the proxy logged about it.

    with run_upstream() as upstream:
        upstream.url; upstream.bodies[-1]["messages"]

It answers POST .../chat/completions and .../responses (LiteLLM forwards Anthropic-style
/v1/messages requests for OpenAI-provider models to the Responses API); `paths` lists where
each body went.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.standins._json_http import send_json


class Upstream:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.upstream = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> Upstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.upstream.bodies.append(body)  # type: ignore[attr-defined]
        self.server.upstream.paths.append(self.path)  # type: ignore[attr-defined]
        if self.path.endswith("/responses"):  # LiteLLM sends /v1/messages for OpenAI models here
            self._send(
                200,
                {
                    "id": "resp_upstream",
                    "object": "response",
                    "created_at": int(time.time()),
                    "status": "completed",
                    "model": body.get("model", "echo"),
                    "output": [
                        {
                            "type": "message",
                            "id": "msg_upstream",
                            "status": "completed",
                            "role": "assistant",
                            "content": [{"type": "output_text", "text": "ok", "annotations": []}],
                        }
                    ],
                    "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
                },
            )
            return
        if not self.path.endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        self._send(
            200,
            {
                "id": "chatcmpl-upstream",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "echo"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    def _send(self, status: int, payload: Any) -> None:
        send_json(self, status, payload)


@contextlib.contextmanager
def run_upstream() -> Iterator[Upstream]:
    upstream = Upstream().start()
    try:
        yield upstream
    finally:
        upstream.stop()
