"""The shipped data: prompts/ and settings/ (inside the wheel, or the source tree when editable)."""

from __future__ import annotations

import hashlib
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from workspace_agent.errors import AgentError

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`prompts` or `settings`: the wheel's copy first, then the repository's top level."""
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise AgentError(f"the installation is incomplete: no {name}/ directory next to {_PACKAGE_DIR}")


def prompt_bytes(level: str) -> bytes:
    """The enforcement prompt of a level, exactly as shipped (the one source for every client)."""
    path = data_dir("prompts") / f"{level}.md"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise AgentError(f"no prompt for enforcement level {level!r}: {path} is missing") from None


def prompt_text(level: str) -> str:
    return prompt_bytes(level).decode("utf-8")


def prompt_sha256(level: str) -> str:
    return hashlib.sha256(prompt_bytes(level)).hexdigest()


@cache
def settings_file(name: str) -> dict[str, Any]:
    """A TOML data file from settings/ (e.g. `models`, `clients`, `lockdown`)."""
    path = data_dir("settings") / f"{name}.toml"
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise AgentError(f"the installation is incomplete: {path} is missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise AgentError(f"{path} is not valid TOML: {exc}") from None
