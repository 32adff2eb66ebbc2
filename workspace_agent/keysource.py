"""Where this run's virtual key comes from: pasted > provisioner > the stored copy.

A pasted key always wins. bootstrap asks the provisioner (bounded retries) and falls back to the
key stored by an earlier start when the provisioner cannot be reached, saying so. plan and check
never touch the network: they use the pasted or stored key.
"""

from __future__ import annotations

from collections.abc import Callable

from workspace_agent import fsio
from workspace_agent.config import AgentConfig
from workspace_agent.errors import AgentError
from workspace_agent.paths import Paths
from workspace_agent.record import Record
from workspace_agent.redact import mask

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any, Literal
    Source = Literal["pasted", "provisioner", "stored", "none"]


class KeyResolution(Record):
    key: str | None
    source: Source
    reused: bool | None = None  # what the provisioner said
    notes: tuple[str, ...] = ()  # warnings worth showing (fallback used, mode fixed, ...)
    problem: str | None = None  # why there is no key
    pending: bool = False  # no key yet, but bootstrap would ask the provisioner (plan/check)
    identity: str | None = None  # provisioner only: coder-agent-token (Coder vouched) or provisioner-secret
    # The key's generation, as the hardened provisioner said (this run, or the start that stored
    # the key); its level and when it was rotated in (issue 18). None: not known.
    generation: int | None = None
    key_level: str | None = None
    rotated: bool = False  # this run got a rotated key
    rotated_at: str | None = None

    @property
    def masked(self) -> str | None:
        return mask(self.key) if self.key else None

    def describe(self) -> str:
        if self.key is None:
            return f"no key: {self.problem}"
        detail = {"pasted": "pasted by hand", "stored": "stored copy", "none": ""}.get(self.source, "")
        if self.source == "provisioner":
            detail = "provisioner, existing key reused" if self.reused else "provisioner, new key"
            detail += ", workspace verified by Coder" if self.identity == "coder-agent-token" else ", shared secret only"
            if self.rotated:
                detail = detail.replace("new key", "rotated key", 1)
        generation = generation_words(self.generation, self.rotated_at, self.key_level)
        return f"{self.masked} ({detail}{'; ' + generation if generation else ''})"


def generation_words(generation: Any, rotated_at: Any, level: Any) -> str:
    """'generation 2, rotated 2026-12-06 for level design-first' ('' when the generation is not
    known: a pasted key, or the platform's provisioner). Used by status and ai-usage too."""
    # The values come from files in the home and from key metadata: shown only when they are
    # what the provisioner writes (a small number, short printable words), never as they are.
    generation, rotated_at, level = shown_generation(generation), shown_word(rotated_at, 40), shown_word(level, 40)
    if generation is None:
        return ""
    text = f"generation {generation}"
    if rotated_at:
        text += f", rotated {rotated_at[:10]}"
        if level:
            text += f" for level {level}"
    elif level:
        text += f", level {level}"
    return text


def shown_word(value: Any, limit: int) -> str | None:
    """`value` when it is a non-empty printable string of at most `limit` characters, else None.

    key-level.json lives in the home (the agent may run as root over it) and key metadata comes
    from LiteLLM: what they say is shown in a terminal, so an escape sequence or a screenful is not
    taken."""
    return value if isinstance(value, str) and 0 < len(value) <= limit and value.isprintable() else None


def shown_generation(value: Any) -> int | None:
    """A generation as the provisioner makes them (0 and up, far below a million), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1_000_000 else None


def stored_key(paths: Paths, *, fix_mode: bool = False) -> tuple[str | None, str | None]:
    """The key saved by an earlier run, and a sentence when its file is readable by others.

    The agent never uses such a key without saying so: with `fix_mode` (commands that may write)
    the file is made 0600 on the spot; without it (plan, check: they never write) the caller says
    how to fix it, and the `key.file` rule shows the mode as drift.
    """
    try:
        fact = fsio.read_fact(paths.key_file, max_bytes=4096)
    except AgentError as exc:
        return None, exc.message
    if fact.text is None or not fact.text.strip():
        return None, None
    warning = None
    if fact.mode is not None and fact.mode & 0o077:
        shown = paths.show(paths.key_file)
        warning = f"{shown} is readable by others (mode {fact.mode:04o})"
        if fix_mode:
            try:
                fsio.set_mode(paths.key_file, 0o600)
            except AgentError as exc:
                raise AgentError(f"{warning} and cannot be made private: {exc.message}") from None
            warning = f"{shown} was readable by others (mode {fact.mode:04o}); it is 0600 now"
    return fact.text.strip(), warning


def resolve_key(
    config: AgentConfig, paths: Paths, *, network: bool, log: Callable[[str], None] = lambda _m: None
) -> KeyResolution:
    """pasted > provisioner (bootstrap only) > stored. A readable stored key file is reported:
    bootstrap's `key.file` rule sets it back to 0600, plan/check show that as drift."""
    if config.api_key:
        return KeyResolution(config.api_key, "pasted")
    resolution = _resolve(config, paths, network=network, log=log)
    if resolution.key is None or resolution.source != "stored":
        return resolution
    from workspace_agent.keylevel import cached_record  # already loaded by the rules (check)

    known = cached_record(paths, resolution.key)  # a file in the home: taken with care
    return resolution._replace(
        generation=shown_generation(known.get("generation")),
        key_level=shown_word(known.get("enforcement_level"), 40),
        rotated_at=shown_word(known.get("rotated_at"), 40),
    )


def _resolve(
    config: AgentConfig, paths: Paths, *, network: bool, log: Callable[[str], None]
) -> KeyResolution:
    stored, warning = stored_key(paths)
    mode_notes: tuple[str, ...] = ()
    if warning and stored:
        fix = "this run sets it back to 0600" if network else "`workspace-agent bootstrap` sets it back to 0600"
        mode_notes = (f"{warning}; {fix}",)
    if not network:
        if stored:
            return KeyResolution(stored, "stored", notes=mode_notes)
        return KeyResolution(
            None,
            "none",
            problem="no key stored yet: run `workspace-agent bootstrap` (it asks the key provisioner)",
            pending=True,
        )
    missing = [
        name
        for name, value in (
            ("CODER_WORKSPACE_ID", config.workspace_id),
            ("CODER_WORKSPACE_OWNER", config.owner),
            ("PROVISIONER_SECRET", config.provisioner_secret),
        )
        if not value
    ]
    if missing:
        problem = f"cannot ask the key provisioner: {', '.join(missing)} not set (or paste a key in LITELLM_API_KEY)"
        if stored:
            return KeyResolution(stored, "stored", notes=(f"{problem}; using the stored key", *mode_notes))
        return KeyResolution(None, "none", problem=problem)
    from workspace_agent.provisioner import KeyRequest, fetch_key

    request = KeyRequest(
        workspace_id=config.workspace_id,
        username=config.owner,
        workspace_name=config.workspace_name,
        enforcement_level=config.enforcement_level,
        guardrail_action=config.guardrail_action,
    )
    try:
        got = fetch_key(
            config.provisioner_url,
            config.provisioner_secret,
            request,
            deadline=config.provision_deadline,
            log=log,
            agent_token=config.agent_token,
        )
    except AgentError as exc:
        if stored:
            note = f"{exc.message}; using the key stored by an earlier start"
            return KeyResolution(stored, "stored", notes=(note, *mode_notes))
        return KeyResolution(None, "none", problem=exc.message)
    notes = mode_notes
    if stored and stored != got.key:
        why = "rotated" if got.rotated else "different"
        notes = (f"the provisioner returned a {why} key; the stored key is replaced", *notes)
    if got.generation is not None:
        from workspace_agent.keylevel import remember

        remembered = remember(paths, got.key, level=got.level, generation=got.generation,
                              rotated_at=got.rotated_at)
        notes = (*notes, remembered) if remembered else notes
    return KeyResolution(got.key, "provisioner", reused=got.reused, notes=notes, identity=got.identity,
                         generation=got.generation, key_level=got.level, rotated=got.rotated,
                         rotated_at=got.rotated_at)
