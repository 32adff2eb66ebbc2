"""What the enforcement hook decides, without LiteLLM: the level, its prompt, where it goes.

The prompts are the files the agent ships in prompts/ (`workspace_agent.data`), read as bytes and
sent unchanged, so the sha256 a drift report carries for a workspace's prompt is the sha256 of
what the gateway prepends. A level the key does not name, or names wrongly, gets the safest level
whose prompt is not empty: a typo in key metadata must never switch enforcement off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LEVELS = ("unrestricted", "standard", "design-first")
SAFEST_FIRST = ("design-first", "standard")  # fallbacks for an unknown level, safest first
HEADER = "x-workspace-enforcement"
METADATA_KEY = "enforcement_level"

# Where each kind of request carries its instructions (LiteLLM's call types).
CHAT_CALL_TYPES = frozenset({"completion", "acompletion"})
ANTHROPIC_CALL_TYPES = frozenset({"anthropic_messages"})
RESPONSES_CALL_TYPES = frozenset({"responses", "aresponses"})

log = logging.getLogger("workspace_agent.litellm_hook")

_SHOWN = re.compile(r"[^A-Za-z0-9._-]")


class PromptUnavailable(Exception):
    """No prompt could be read for a level that needs one (the gateway's install is broken)."""


@dataclass(frozen=True)
class Decision:
    """The level applied to one request and the exact prompt bytes (b"" = nothing prepended)."""

    level: str
    prompt: bytes
    requested: str | None  # what the key's metadata said, shown safely; None when absent
    fallback: bool  # the key named no known level: the safest non-empty one was used

    @property
    def sha256(self) -> str | None:
        return hashlib.sha256(self.prompt).hexdigest() if self.prompt else None

    def header(self) -> str:
        """`design-first; sha256=<hex>` (`; fallback-from=<value>` after a fallback), or
        `unrestricted` alone when nothing was prepended."""
        parts = [self.level]
        if self.prompt:
            parts.append(f"sha256={self.sha256}")
        if self.fallback:
            parts.append(f"fallback-from={self.requested or 'missing'}")
        return "; ".join(parts)


def default_prompts_dir() -> Path:
    """The prompts/ the agent ships (the wheel's copy, or the source tree's)."""
    from workspace_agent.data import data_dir

    return data_dir("prompts")


class PromptStore:
    """Prompt bytes per level, re-read only when a file's mtime, size or inode changes.

    A file that becomes unreadable keeps serving the last good copy (logged), so an admin's
    half-finished edit cannot switch enforcement off; with no good copy, `get` raises.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._cache: dict[str, tuple[tuple[int, int, int], bytes]] = {}
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path:
        if self._directory is None:
            self._directory = default_prompts_dir()
        return self._directory

    def get(self, level: str) -> bytes:
        path = self.directory / f"{level}.md"
        with self._lock:
            cached = self._cache.get(level)
            try:
                info = os.stat(path)
                stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
                if cached is not None and cached[0] == stamp:
                    return cached[1]
                data = path.read_bytes()
                data.decode("utf-8")  # sent as text: bytes that are not UTF-8 are a broken edit
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                if cached is not None:
                    log.error("enforcement prompt %s unusable (%s); serving the last good copy", path, reason)
                    return cached[1]
                raise PromptUnavailable(f"enforcement prompt {path} cannot be read: {reason}") from None
            if cached is not None:
                log.info("enforcement prompt %s changed: %d bytes, re-read", path, len(data))
            self._cache[level] = (stamp, data)
            return data


def shown(value: object) -> str:
    """A metadata value as it may appear in a log line or a header: short, harmless characters."""
    text = value if isinstance(value, str) else type(value).__name__
    return _SHOWN.sub("_", text)[:40] or "empty"


def decide(metadata: Mapping[str, Any] | None, store: PromptStore) -> Decision:
    """The level named by a key's metadata, or the safest non-empty level when it names none."""
    raw = (metadata or {}).get(METADATA_KEY)
    if isinstance(raw, str) and raw in LEVELS:
        return Decision(raw, store.get(raw), raw, fallback=False)
    requested = None if raw is None else shown(raw)
    for level in SAFEST_FIRST:
        prompt = store.get(level)
        if prompt:
            return Decision(level, prompt, requested, fallback=True)
    raise PromptUnavailable(
        f"every fallback prompt ({', '.join(SAFEST_FIRST)}) in {store.directory} is empty"
    )


def prepend(data: dict[str, Any], call_type: str, prompt: bytes) -> bool:
    """Put the prompt before everything the client sent; True when the request was changed.

    Chat: a first system message. Anthropic /v1/messages: the front of `system`. Responses API:
    the front of `instructions`. Other calls (embeddings, images, ...) carry no instructions.

    A client that already sends the prompt in its own system text (OpenCode puts enforcement.md
    among its instructions) keeps everything else it wrote, but its copy is taken out: the model
    gets the text once, and still first. User and assistant turns are never changed.
    """
    if not prompt:
        return False
    text = prompt.decode("utf-8")
    if call_type in CHAT_CALL_TYPES and isinstance(data.get("messages"), list):
        rest = [_message_without_copy(m, text) for m in data["messages"]]
        data["messages"] = [{"role": "system", "content": text}, *(m for m in rest if m is not None)]
        return True
    if call_type in ANTHROPIC_CALL_TYPES and isinstance(data.get("messages"), list):
        system = data.get("system")
        if isinstance(system, list):
            blocks = [_block_without_copy(b, text) for b in system]
            data["system"] = [{"type": "text", "text": text}, *(b for b in blocks if b is not None)]
        elif isinstance(system, str) and system:
            own = without_copy(system, text)
            data["system"] = [{"type": "text", "text": text}, {"type": "text", "text": own}] if own.strip() else text
        else:
            data["system"] = text
        return True
    if call_type in RESPONSES_CALL_TYPES and "input" in data:
        instructions = data.get("instructions")
        own = without_copy(instructions, text) if isinstance(instructions, str) else ""
        data["instructions"] = text + ("\n\n" + own if own.strip() else "")
        return True
    return False


def without_copy(content: str, prompt: str) -> str:
    """`content` with every copy of the prompt taken out (the exact text, or the text without its
    surrounding blank lines, as clients that trim the files they read send it)."""
    for copy in dict.fromkeys((prompt, prompt.strip())):
        if copy and copy in content:
            return content.replace(copy, "")
    return content


_SYSTEM_ROLES = frozenset({"system", "developer"})


def _message_without_copy(message: Any, prompt: str) -> Any:
    """A system message without the prompt's copy; None when nothing else was in it."""
    if not isinstance(message, dict) or message.get("role") not in _SYSTEM_ROLES:
        return message
    content = message.get("content")
    if isinstance(content, str):
        own = without_copy(content, prompt)
        if own == content:
            return message
        return {**message, "content": own} if own.strip() else None
    if isinstance(content, list):
        parts = [_block_without_copy(part, prompt) for part in content]
        kept = [part for part in parts if part is not None]
        if kept == content:
            return message
        return {**message, "content": kept} if kept else None
    return message


def _block_without_copy(block: Any, prompt: str) -> Any:
    """A text block (chat content part, Anthropic system block) without the copy; None when empty."""
    if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
        return block
    own = without_copy(block["text"], prompt)
    if own == block["text"]:
        return block
    return {**block, "text": own} if own.strip() else None
