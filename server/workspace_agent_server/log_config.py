"""The server's own log lines (webhook, writer, replicas, refused connections) go where uvicorn's
go, in its format, at `--log-level`: given to uvicorn as its log config, so that every worker
process of `--workers N` applies it too (they do not run cli.main)."""

from __future__ import annotations

import copy
from typing import Any

from uvicorn.config import LOGGING_CONFIG


def uvicorn_log_config(level: str) -> dict[str, Any]:
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["workspace_agent_server"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config
