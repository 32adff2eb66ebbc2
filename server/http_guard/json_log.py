"""Log records as JSON lines: one record is one line whatever its text holds, so a user name
with a newline (or anything else a client sends) can never forge a log line of its own."""

from __future__ import annotations

import json
import logging
import time
from typing import Any


class JsonLines(logging.Formatter):
    """`{"at", "level", "logger", "message"}` (+ `"error"` with the traceback), one per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True)


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """A logging config for uvicorn (`log_config=`) that writes every logger as JSON lines to
    stderr: uvicorn's own, its access log, and the servers' loggers."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonLines"}},
        "handlers": {"stderr": handler},
        "loggers": {
            name: {"handlers": ["stderr"], "level": level, "propagate": False}
            for name in (
                "uvicorn",
                "uvicorn.error",
                "uvicorn.access",
                "workspace_agent_server",
                "key_provisioner",
            )
        },
    }
