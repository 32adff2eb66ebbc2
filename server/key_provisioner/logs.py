"""The provisioner's logger, with a filter that masks anything key-shaped and every configured
secret before a line is written: a key must never reach a log, even by mistake.
"""

from __future__ import annotations

import logging
import re

LOGGER_NAME = "key_provisioner"
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-]{6,}")


def mask(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "(secret)")
    return _KEY_LIKE.sub(lambda m: f"sk-…{m.group(0)[-4:]}", text)


class RedactFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage(), self.secrets)
        record.args = None
        return True


def logger(secrets: tuple[str, ...]) -> logging.Logger:
    """The logger, with exactly one RedactFilter for these secrets."""
    log = logging.getLogger(LOGGER_NAME)
    for old in [f for f in log.filters if isinstance(f, RedactFilter)]:
        log.removeFilter(old)
    log.addFilter(RedactFilter(secrets))
    return log
