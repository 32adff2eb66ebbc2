"""Desired state → observe → plan → apply: the engine shared by bootstrap, plan and check.

A rule is one small managed thing. A `FileRule` is a pure transform of one file's text (a whole
generated file, or one key inside a settings file); several rules on the same file are folded in
order, so the file is read once and written once. An `ActionRule` is anything that is not a
file's text (an installed extension): it observes, and it can fix.

`build_plan` only reads. `apply_plan` is the only place that writes, and it re-folds each file
from what is on disk at that moment, so an edit made between plan and apply is not lost.
`check` and `bootstrap` call the same `build_plan`, so they can never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from workspace_agent import fsio, privilege
from workspace_agent.errors import AgentError
from workspace_agent.record import Record
from workspace_agent.redact import mask_bound_values, redact

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Literal
    State = Literal["compliant", "drift", "corrected", "error"]

Render = Callable[[str | None], str | None]
"""Current text (None: absent) → desired text (None: must be absent). Pure; may raise AgentError."""



class FileRule(Record):
    """One managed thing that lives in a file's text."""

    rule_id: str
    path: Path
    render: Render
    mode: int | None = None  # required permission bits; None keeps what is there
    secret: bool = False  # the file holds a secret: redact diffs, never show values
    summarize: Callable[[str | None], str | None] | None = None  # the value shown as before → after
    title: str = ""
    user_file: bool = False  # the user's own file (we edit keys in it): a read-only one is left alone


class ActionFact(Record):
    """What an action rule sees: is it as required, and what to show before → after."""

    compliant: bool
    before: str | None = None
    after: str | None = None
    message: str | None = None  # a note shown in any state: what to do about a report-only drift, or why it was not verifiable


class ActionRule(Record):
    """One managed thing that is not a file's text (e.g. an extension that must be absent)."""

    rule_id: str
    target: str
    observe: Callable[[], ActionFact]
    fix: Callable[[], None] | None  # None: report only (the thing is the user's; we only say so)
    title: str = ""


Rule = FileRule | ActionRule


class RuleResult(Record):
    rule_id: str
    target: str
    state: State
    before: str | None = None
    after: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.state in ("compliant", "corrected")


class FilePlan(Record):
    """One file: what is there, what should be there, and the rules that said so."""

    path: Path
    rules: list[FileRule]
    fact: fsio.FileFact
    desired_text: str | None
    desired_mode: int | None
    drifted_rule_ids: list[str]

    @property
    def secret(self) -> bool:
        return any(rule.secret for rule in self.rules)

    @property
    def user_file(self) -> bool:
        return any(rule.user_file for rule in self.rules)

    @property
    def text_changes(self) -> bool:
        return self.desired_text != self.fact.text

    @property
    def mode_changes(self) -> bool:
        return (
            self.desired_text is not None
            and self.desired_mode is not None
            and self.fact.mode is not None
            and self.fact.mode != self.desired_mode
        )

    @property
    def owner_changes(self) -> bool:
        """A secret file owned by someone else: rewritten so that it is this user's, 0600."""
        return self.secret and self.desired_text is not None and self.fact.foreign

    @property
    def changes(self) -> bool:
        return self.text_changes or self.mode_changes or self.owner_changes


class Plan(Record):
    results: list[RuleResult]
    files: list[FilePlan]
    actions: list[ActionRule]
    secrets: tuple[str, ...] = ()
    managed_paths: tuple[Path, ...] = ()  # every file a rule manages, changing or not

    @property
    def drift(self) -> list[RuleResult]:
        return [r for r in self.results if r.state == "drift"]

    @property
    def errors(self) -> list[RuleResult]:
        return [r for r in self.results if r.state == "error"]


def _required_mode(rules: Sequence[FileRule]) -> int | None:
    modes = [rule.mode for rule in rules if rule.mode is not None]
    return min(modes, key=lambda m: m.bit_count()) if modes else None  # the strictest mode


def _fold(
    rules: Sequence[FileRule], fact: fsio.FileFact
) -> tuple[str | None, list[RuleResult], list[str]]:
    """Run each rule's transform over the text in order; per-rule compliant/drift/error."""
    text = fact.text
    results: list[RuleResult] = []
    drifted: list[str] = []
    required_mode = _required_mode(rules)
    for rule in rules:
        target = str(rule.path)
        try:
            new = rule.render(text)
        except AgentError as exc:
            results.append(RuleResult(rule.rule_id, target, "error", message=exc.message))
            continue
        mode_drift = (
            rule.mode is not None and new is not None and fact.mode is not None and fact.mode != required_mode
        )
        owner_drift = rule.secret and new is not None and fact.foreign
        if new == text and not mode_drift and not owner_drift:
            results.append(RuleResult(rule.rule_id, target, "compliant", *_values(rule, text, new)))
            continue
        before, after = _values(rule, text, new)
        if new == text:  # only the mode and/or the owner differ
            was = ([f"mode {fact.mode:04o}"] if mode_drift else []) + ([f"owner uid {fact.uid}"] if owner_drift else [])
            will = ([f"mode {required_mode:04o}"] if mode_drift else []) + (
                [f"owner uid {privilege.acting_uid(rule.path)}"] if owner_drift else [])
            before, after = ", ".join(was), ", ".join(will)
        results.append(RuleResult(rule.rule_id, target, "drift", before, after))
        drifted.append(rule.rule_id)
        text = new
    return text, results, drifted


def _values(rule: FileRule, before: str | None, after: str | None) -> tuple[str | None, str | None]:
    if rule.secret:
        return ("absent" if before is None else "set"), ("absent" if after is None else "set")
    if rule.summarize is not None:  # a value read from the file: one bound to a key-like name is masked
        return _masked(rule.summarize(before)), _masked(rule.summarize(after))
    return ("absent" if before is None else "present"), ("absent" if after is None else "present")


def _masked(value: str | None) -> str | None:
    return None if value is None else mask_bound_values(value)


def build_plan(rules: Iterable[Rule], secrets: Sequence[str] = ()) -> Plan:
    """Observe everything the rules manage and decide what would change. Never writes."""
    by_path: dict[Path, list[FileRule]] = {}
    ordered: list[tuple[str, object]] = []
    for rule in rules:
        if isinstance(rule, FileRule):
            if rule.path not in by_path:
                by_path[rule.path] = []
                ordered.append(("file", rule.path))
            by_path[rule.path].append(rule)
        else:
            ordered.append(("action", rule))

    results: list[RuleResult] = []
    files: list[FilePlan] = []
    actions: list[ActionRule] = []
    for kind, item in ordered:
        if kind == "file":
            assert isinstance(item, Path)
            file_rules = by_path[item]
            try:
                fact = fsio.read_fact(item)
            except AgentError as exc:
                results.extend(RuleResult(r.rule_id, str(item), "error", message=exc.message) for r in file_rules)
                continue
            text, file_results, drifted = _fold(file_rules, fact)
            results.extend(file_results)
            plan = FilePlan(item, file_rules, fact, text, _required_mode(file_rules), drifted)
            if plan.changes:
                files.append(plan)
        else:
            assert isinstance(item, (ActionRule,))
            try:
                seen = item.observe()
            except AgentError as exc:
                results.append(RuleResult(item.rule_id, item.target, "error", message=exc.message))
                continue
            state: State = "compliant" if seen.compliant else "drift"
            results.append(RuleResult(item.rule_id, item.target, state, seen.before, seen.after, seen.message))
            if not seen.compliant:
                actions.append(item)
    return Plan(results, files, actions, tuple(secrets), tuple(by_path))


def apply_plan(plan: Plan) -> list[RuleResult]:
    """Make every drifted rule compliant; return the results with drift → corrected or error."""
    failures: dict[str, str | None] = {}  # rule id → error message (None: fixed)
    for file_plan in plan.files:
        failures.update(_apply_file(file_plan))
    for action in plan.actions:
        if action.fix is None:
            continue
        try:
            action.fix()
        except AgentError as exc:
            failures[action.rule_id] = exc.message
        else:
            failures[action.rule_id] = None
    final: list[RuleResult] = []
    for result in plan.results:
        if result.state == "drift" and result.rule_id in failures:
            message = failures[result.rule_id]
            final.append(result._replace(state="error", message=message) if message else result._replace(state="corrected"))
        else:
            final.append(result)
    return final


def sweep_interrupted(plan: Plan) -> list[Path]:
    """Remove the temp files a killed earlier run left beside the managed files.

    Call it only while holding the bootstrap lock: every write of a managed file happens under
    that lock, so a temp file named for one of them is a leftover, never a write in progress.
    """
    by_directory: dict[Path, set[str]] = {}
    for path in plan.managed_paths:
        by_directory.setdefault(path.parent, set()).add(path.name)
    removed: list[Path] = []
    for directory, names in by_directory.items():
        removed += fsio.sweep_temps(directory, names)
    return removed


def _apply_file(file_plan: FilePlan) -> dict[str, str | None]:
    """Write one file atomically from a fresh fold; (rule_id, error message or None) per drifted rule."""
    rule_ids = file_plan.drifted_rule_ids
    try:
        fact = fsio.read_fact(file_plan.path)
        if file_plan.user_file and fact.exists and not fsio.writable_by_owner(fact):
            raise AgentError(_read_only_message(fact))
        if file_plan.user_file and fact.text == "" and file_plan.fact.text:
            # Emptied since the plan: a program saving in place (truncate, then write) is mid-save.
            # Folding "" would write only our keys and its text would land in a replaced inode.
            raise AgentError(f"{file_plan.path} was emptied while the agent was about to edit it (another "
                             "program is saving it); left as it is for the next run")
        if fact.text == file_plan.fact.text and fact.mode == file_plan.fact.mode:
            text, mode = file_plan.desired_text, file_plan.desired_mode
        else:  # changed under us since the plan: fold again on what is there now
            text, _results, _drifted = _fold(file_plan.rules, fact)
            mode = file_plan.desired_mode
        if text is None:
            fsio.remove_file(file_plan.path)
        elif text != fact.text or (file_plan.secret and fact.foreign):  # a rewrite makes it ours
            fsio.atomic_write(file_plan.path, text, mode)
        elif mode is not None and fact.mode != mode:
            fsio.set_mode(file_plan.path, mode)
    except AgentError as exc:
        return {rule_id: exc.message for rule_id in rule_ids}
    return {rule_id: None for rule_id in rule_ids}


def _read_only_message(fact: fsio.FileFact) -> str:
    mode = fact.mode or 0
    if not mode & 0o200:
        why = f"is read-only (mode {mode:04o})"
        fix = "make it writable (chmod u+w)"
    else:
        why = f"belongs to another user (uid {fact.uid}, mode {mode:04o}) and is not writable by this one"
        fix = "give it to the workspace user (chown)"
    return f"{fact.path} {why}, so the agent leaves it as it is; {fix} to let the agent keep its settings there"


def render_diff(plan: Plan, show_path: Callable[[Path], str] = str) -> str:
    """A unified diff of every file that would change (secrets masked), then the actions.

    Only bytes the agent or the user it acts for wrote are shown: a file owned by someone else
    or with more than one hard link (it may be another file's bytes) gets one line instead, and
    a secret file's whole line (the key file: an old key of any shape) is masked like a key."""
    chunks: list[str] = []
    hidden = list(plan.secrets)
    for file_plan in plan.files:
        name = show_path(file_plan.path)
        hidden += _secret_lines(file_plan)
        if file_plan.text_changes:
            withheld = _not_shown(file_plan.fact)
            if withheld:
                chunks.append(f"~ {name}: contents not shown ({withheld})\n")
            else:
                chunks.append(_unified(file_plan, name))
        if file_plan.mode_changes or (not file_plan.fact.exists and file_plan.desired_mode is not None):
            old = f"{file_plan.fact.mode:04o}" if file_plan.fact.mode is not None else "new"
            chunks.append(f"mode {name}: {old} → {file_plan.desired_mode:04o}\n")
    for action in plan.actions:
        result = next((r for r in plan.results if r.rule_id == action.rule_id), None)
        change = f"{result.before} → {result.after}" if result and result.before else "fix"
        chunks.append(f"~ {action.rule_id} {action.target}: {change}\n")
    return mask_bound_values(redact("".join(chunks), hidden))


_CONTEXT = 3
_BLOCK = 64 * 1024
MAX_DIFF_LINES = 20_000  # a changed region longer than this is summarised, not diffed


def _unified(file_plan: FilePlan, name: str) -> str:
    """The unified diff of one file, computed only over the lines between the common prefix and
    suffix (so an edit at the end of an 8 MB settings.json does not diff 400,000 lines)."""
    import difflib  # only when something would change: a compliant check never loads it

    old, new = file_plan.fact.text or "", file_plan.desired_text or ""
    start, old_end, new_end = _changed_region(old, new)
    skipped = old.count("\n", 0, start)
    before = old[start:old_end].splitlines(keepends=True)
    after = new[start:new_end].splitlines(keepends=True)
    if max(len(before), len(after)) > MAX_DIFF_LINES:
        return f"~ {name}: {len(before)} lines → {len(after)} lines changed (too long to show)\n"
    diff = difflib.unified_diff(
        before,
        after,
        fromfile=f"a/{name}" if file_plan.fact.exists else "/dev/null",
        tofile=f"b/{name}" if file_plan.desired_text is not None else "/dev/null",
        n=_CONTEXT,
    )
    lines = (_shift_hunk(line, skipped) if skipped and line.startswith("@@") else line for line in diff)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def _changed_region(old: str, new: str) -> tuple[int, int, int]:
    """(start, old end, new end): whole lines, with context, around where the texts differ."""
    prefix = _common_prefix(old, new)
    suffix = _common_suffix(old, new, prefix)
    start = old.rfind("\n", 0, prefix) + 1
    for _ in range(_CONTEXT):
        if start == 0:
            break
        start = old.rfind("\n", 0, start - 1) + 1
    old_end = _forward_lines(old, len(old) - suffix)
    new_end = _forward_lines(new, len(new) - suffix)
    return start, old_end, new_end


def _forward_lines(text: str, pos: int) -> int:
    """The end of the line holding `pos`, then `_CONTEXT` more lines."""
    for _ in range(_CONTEXT + 1):
        if pos >= len(text):
            return len(text)
        found = text.find("\n", pos)
        pos = len(text) if found < 0 else found + 1
    return pos


def _common_prefix(a: str, b: str) -> int:
    size = 0
    limit = min(len(a), len(b))
    while size < limit and a[size : size + _BLOCK] == b[size : size + _BLOCK]:
        size += _BLOCK
    size = min(size, limit)
    while size < limit and a[size] == b[size]:  # inside the first block that differs
        size += 1
    return size


def _common_suffix(a: str, b: str, prefix: int) -> int:
    """Common suffix length that does not reach into the common prefix of either text."""
    limit = min(len(a), len(b)) - prefix
    size = 0
    while size + _BLOCK <= limit and a[len(a) - size - _BLOCK : len(a) - size] == b[len(b) - size - _BLOCK : len(b) - size]:
        size += _BLOCK
    while size < limit and a[len(a) - size - 1] == b[len(b) - size - 1]:
        size += 1
    return size


# Patterns used only when there is a diff to show: compiled then (re keeps them), not at import.
_HUNK = r"^@@ -(\d+)((?:,\d+)?) \+(\d+)((?:,\d+)?) @@"


def _shift_hunk(line: str, lines: int) -> str:
    """A hunk header of a diff of a slice, renumbered for the whole file."""
    found = re.match(_HUNK, line)
    if found is None:
        return line
    old, old_len, new, new_len = found.groups()
    return f"@@ -{int(old) + lines}{old_len} +{int(new) + lines}{new_len} @@" + line[found.end():]


def _not_shown(fact: fsio.FileFact) -> str | None:
    """Why this file's bytes are not ours to print (None: they are)."""
    if not fact.exists:
        return None
    acting = privilege.acting_uid(fact.path)
    if fact.uid is not None and fact.uid != acting:
        return f"owned by uid {fact.uid}, not by uid {acting}"
    if fact.links > 1:
        return f"it has {fact.links} hard links, so its bytes may be another file's"
    return None


_BARE_WORD = r"[^\s\"'{}\[\]:=,]+"


def _secret_lines(file_plan: FilePlan) -> list[str]:
    """A secret file that is one bare word (the key file): that word is a secret whatever its shape."""
    if not file_plan.secret:
        return []
    found = []
    for text in (file_plan.fact.text, file_plan.desired_text):
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if len(lines) == 1 and re.fullmatch(_BARE_WORD, lines[0]):
            found.append(lines[0])
    return found
