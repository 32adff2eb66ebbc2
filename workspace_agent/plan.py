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

import difflib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from workspace_agent import fsio
from workspace_agent.errors import AgentError
from workspace_agent.redact import redact

Render = Callable[[str | None], str | None]
"""Current text (None: absent) → desired text (None: must be absent). Pure; may raise AgentError."""

State = Literal["compliant", "drift", "corrected", "error"]


@dataclass(frozen=True)
class FileRule:
    """One managed thing that lives in a file's text."""

    rule_id: str
    path: Path
    render: Render
    mode: int | None = None  # required permission bits; None keeps what is there
    secret: bool = False  # the file holds a secret: redact diffs, never show values
    summarize: Callable[[str | None], str | None] | None = None  # the value shown as before → after
    title: str = ""
    user_file: bool = False  # the user's own file (we edit keys in it): a read-only one is left alone


@dataclass(frozen=True)
class ActionFact:
    """What an action rule sees: is it as required, and what to show before → after."""

    compliant: bool
    before: str | None = None
    after: str | None = None
    message: str | None = None  # a note shown in any state: what to do about a report-only drift, or why it was not verifiable


@dataclass(frozen=True)
class ActionRule:
    """One managed thing that is not a file's text (e.g. an extension that must be absent)."""

    rule_id: str
    target: str
    observe: Callable[[], ActionFact]
    fix: Callable[[], None] | None  # None: report only (the thing is the user's; we only say so)
    title: str = ""


Rule = FileRule | ActionRule


@dataclass(frozen=True)
class RuleResult:
    rule_id: str
    target: str
    state: State
    before: str | None = None
    after: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.state in ("compliant", "corrected")


@dataclass
class FilePlan:
    """One file: what is there, what should be there, and the rules that said so."""

    path: Path
    rules: list[FileRule]
    fact: fsio.FileFact
    desired_text: str | None
    desired_mode: int | None
    drifted_rule_ids: list[str] = field(default_factory=list)

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


@dataclass
class Plan:
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
                [f"owner uid {os.geteuid()}"] if owner_drift else [])
            before, after = ", ".join(was), ", ".join(will)
        results.append(RuleResult(rule.rule_id, target, "drift", before, after))
        drifted.append(rule.rule_id)
        text = new
    return text, results, drifted


def _values(rule: FileRule, before: str | None, after: str | None) -> tuple[str | None, str | None]:
    if rule.secret:
        return ("absent" if before is None else "set"), ("absent" if after is None else "set")
    if rule.summarize is not None:
        return rule.summarize(before), rule.summarize(after)
    return ("absent" if before is None else "present"), ("absent" if after is None else "present")


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
            final.append(replace(result, state="error", message=message) if message else replace(result, state="corrected"))
        else:
            final.append(result)
    return final


def sweep_interrupted(plan: Plan) -> list[Path]:
    """Remove the temp files a killed earlier run left beside the managed files.

    Call it only while holding the bootstrap lock: every write of a managed file happens under
    that lock, so a temp file named for one of them is a leftover, never a write in progress.
    """
    removed: list[Path] = []
    for path in plan.managed_paths:
        removed += fsio.sweep_temps(path.parent, re.escape(path.name))
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
    """A unified diff of every file that would change (secrets masked), then the actions."""
    chunks: list[str] = []
    for file_plan in plan.files:
        name = show_path(file_plan.path)
        if file_plan.text_changes:
            before = (file_plan.fact.text or "").splitlines(keepends=True)
            after = (file_plan.desired_text or "").splitlines(keepends=True)
            diff = difflib.unified_diff(
                before,
                after,
                fromfile=f"a/{name}" if file_plan.fact.exists else "/dev/null",
                tofile=f"b/{name}" if file_plan.desired_text is not None else "/dev/null",
            )
            text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in diff)
            chunks.append(text)
        if file_plan.mode_changes or (not file_plan.fact.exists and file_plan.desired_mode is not None):
            old = f"{file_plan.fact.mode:04o}" if file_plan.fact.mode is not None else "new"
            chunks.append(f"mode {name}: {old} → {file_plan.desired_mode:04o}\n")
    for action in plan.actions:
        result = next((r for r in plan.results if r.rule_id == action.rule_id), None)
        change = f"{result.before} → {result.after}" if result and result.before else "fix"
        chunks.append(f"~ {action.rule_id} {action.target}: {change}\n")
    return redact("".join(chunks), plan.secrets)
