"""The review workflows shipped in prompts/review/: one Markdown file each, so every workspace
gets the same security/performance/style reviews in every client (Roo Code modes, OpenCode agents).

A file starts with TOML front matter between `+++` lines (slug, name, description, when_to_use,
role) followed by the instructions in Markdown. The format is strict: a broken file stops the run
with a sentence naming it, rather than silently shipping a workspace without that review.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from workspace_agent import data
from workspace_agent.errors import AgentError
from workspace_agent.record import Record

_FRONT = re.compile(r"\A\+\+\+\r?\n(.*?)\r?\n\+\+\+\r?\n(.*)\Z", re.DOTALL)
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # Roo Code allows [a-zA-Z0-9-]; OpenCode uses it as a name
_FIELDS = ("slug", "name", "description", "when_to_use", "role")


class ReviewWorkflow(Record):
    slug: str  # security-review: Roo Code mode slug and OpenCode agent name
    name: str  # shown in Roo Code's mode picker
    description: str  # one line: OpenCode agent description, Roo Code mode description
    when_to_use: str  # Roo Code's whenToUse (the orchestrator reads it)
    role: str  # the role definition: who the assistant is in this workflow
    instructions: str  # what to do, as Markdown

    @property
    def prompt(self) -> str:
        """Role and instructions as one system prompt (for clients with a single prompt field)."""
        return f"{self.role}\n\n{self.instructions}"


def front_matter(text: str) -> str | None:
    """The TOML between the '+++' lines, or None when there is none."""
    match = _FRONT.match(text.lstrip("\ufeff"))
    return match.group(1) if match else None


def parse(text: str, source: str) -> ReviewWorkflow:
    """One workflow file's text → the workflow; AgentError naming `source` when it is malformed."""
    match = _FRONT.match(text.lstrip("\ufeff"))
    if not match:
        raise AgentError(f"{source}: a review workflow must start with TOML front matter between '+++' lines")
    try:
        meta = data.toml(match.group(1))
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise AgentError(f"{source}: the front matter is not valid TOML ({exc})") from None
    missing = [name for name in _FIELDS if not isinstance(meta.get(name), str) or not meta[name].strip()]
    if missing:
        raise AgentError(f"{source}: the front matter needs a non-empty text for {', '.join(missing)}")
    unknown = sorted(set(meta) - set(_FIELDS))
    if unknown:
        raise AgentError(f"{source}: unknown front matter key {unknown[0]!r}; allowed: {', '.join(_FIELDS)}")
    if not _SLUG.match(meta["slug"]):
        raise AgentError(f"{source}: slug {meta['slug']!r} must be lower-case letters, digits and single dashes")
    instructions = match.group(2).strip()
    if not instructions:
        raise AgentError(f"{source}: the instructions after the front matter are empty")
    return ReviewWorkflow(instructions=instructions + "\n", **{k: meta[k].strip() for k in _FIELDS})


def load(directory: Path | None = None) -> tuple[ReviewWorkflow, ...]:
    """Every workflow in prompts/review/, ordered by file name; slugs must be unique."""
    directory = directory or data.data_dir("prompts") / "review"
    if not directory.is_dir():
        return ()
    found: list[ReviewWorkflow] = []
    for path in sorted(directory / name for name in os.listdir(directory) if name.endswith(".md")):  # glob costs an fnmatch regex
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentError(f"cannot read review workflow {path}: {exc}") from None
        workflow = parse(text, str(path))
        if any(w.slug == workflow.slug for w in found):
            raise AgentError(f"{path}: slug {workflow.slug!r} is used by another review workflow")
        found.append(workflow)
    return tuple(found)
