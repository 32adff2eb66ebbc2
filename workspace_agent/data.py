"""The shipped data: prompts/ and settings/ (inside the wheel, or the source tree when editable)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from workspace_agent.digest import sha256_hex
from workspace_agent.errors import AgentError

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

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
    return sha256_hex(prompt_bytes(level))


@cache
def settings_file(name: str) -> dict[str, Any]:
    """A TOML data file from settings/ (e.g. `models`, `clients`, `lockdown`)."""
    path = data_dir("settings") / f"{name}.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgentError(f"the installation is incomplete: {path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentError(f"cannot read {path}: {exc}") from None
    try:
        return toml(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise AgentError(f"{path} is not valid TOML: {exc}") from None


# Importing tomllib costs about as much as the rest of a `check`'s own modules, for data that only
# changes with a release. COMPILED maps the sha256 of each shipped TOML text (settings/*.toml, the
# review workflows' front matter) to its parsed value, as JSON: a text found there needs no
# parser, any other text (an edited file, a policy) is parsed. Regenerate it after changing one:
#     python -m workspace_agent.data
COMPILED = "compiled-toml.json"


def toml(text: str) -> dict[str, Any]:
    """Parsed TOML; raises ValueError (tomllib.TOMLDecodeError) when it is not valid."""
    found = _compiled().get(sha256_hex(text.encode("utf-8")))
    if isinstance(found, dict):
        import json

        return dict(json.loads(json.dumps(found)))  # a copy (callers may change it); copy.deepcopy costs two imports
    import tomllib

    return tomllib.loads(text)


@cache
def _compiled() -> dict[str, Any]:
    import json

    try:
        loaded = json.loads((data_dir("settings") / COMPILED).read_text(encoding="utf-8"))
    except (OSError, ValueError, AgentError):
        return {}  # absent or damaged: everything is parsed, only slower
    return loaded if isinstance(loaded, dict) else {}


def shipped_toml_texts() -> list[str]:
    """Every TOML text the package ships (what COMPILED must hold)."""
    from workspace_agent import review

    texts = [path.read_text(encoding="utf-8") for path in sorted(data_dir("settings").glob("*.toml"))]
    for path in sorted((data_dir("prompts") / "review").glob("*.md")):
        front = review.front_matter(path.read_text(encoding="utf-8"))
        if front is not None:
            texts.append(front)
    return texts


def compile_toml() -> dict[str, Any]:
    """sha256 of each shipped TOML text → its parsed value (texts JSON cannot hold are left out)."""
    import json
    import tomllib

    compiled: dict[str, Any] = {}
    for text in shipped_toml_texts():
        value = tomllib.loads(text)
        try:
            if json.loads(json.dumps(value)) != value:
                continue
        except (TypeError, ValueError):
            continue  # dates and times: parsed at run time
        compiled[sha256_hex(text.encode("utf-8"))] = value
    return compiled


def main() -> int:
    """Write settings/compiled-toml.json next to the TOML files it was made from."""
    import json

    target = data_dir("settings") / COMPILED
    target.write_text(json.dumps(compile_toml(), indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
