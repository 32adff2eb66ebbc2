"""Make secrets safe to show: a key is never printed in full, at most `sk-…abcd`."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Anything that looks like a LiteLLM/OpenAI-style key, even one we were not told about.
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")


def mask(secret: str) -> str:
    """Show a secret as `sk-…abcd` (prefix kept only when it is the usual `sk-`)."""
    if not secret:
        return "(empty)"
    tail = secret[-4:] if len(secret) >= 12 else ""
    prefix = "sk-" if secret.startswith("sk-") else ""
    return f"{prefix}…{tail}"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every known secret, and anything key-shaped, with its masked form."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, mask(secret))
    return _KEY_LIKE.sub(lambda m: mask(m.group(0)), text)
