"""bootstrap / plan / check as plain functions, and a click-free parser for their usual forms.

`check` runs from a scheduler and `bootstrap` at every workspace start: importing click (and the
inspect machinery it pulls in) cost about as much as starting Python itself. `fast_main` parses
the forms these commands are run with (their flags and the setting flags of config.SETTINGS) and
runs them here; anything else (--help, --demo, a typo, a value click would reject) returns None
and goes to the full CLI in cli.py, which calls the same functions, so both paths behave alike.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from workspace_agent.errors import EXIT_CHANGED, EXIT_ERROR, EXIT_INTERRUPTED, AgentError

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

# flag → (option name, takes a value) for each command's own options (cli.py declares the same)
_OUTPUT = {"--json": ("as_json", False), "-q": ("quiet", False), "--quiet": ("quiet", False)}
_OWN: dict[str, dict[str, tuple[str, bool]]] = {
    "check": {**_OUTPUT, "--no-diff": ("no_diff", False), "--report": ("send_report", False)},
    "plan": dict(_OUTPUT),
    "bootstrap": {**_OUTPUT, "--dry-run": ("dry_run", False), "--wait": ("wait", True),
                  "--detailed-exitcodes": ("detailed_exitcodes", False), "--report": ("send_report", False)},
}


def echo(text: str, *, err: bool = False, nl: bool = True) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + ("\n" if nl else ""))
    stream.flush()


def load(options: dict[str, Any], environ: Mapping[str, str]) -> tuple[Any, dict[str, Any]]:
    """Flags + environment + policy file → (AgentConfig, policy), checked against the one policy
    schema (policyfile.py: the only place config and policy are loaded)."""
    from workspace_agent.policyfile import load as load_checked

    return load_checked(options, environ)


def run_command(mode: str, options: dict[str, Any], *, as_json: bool, quiet: bool, wait: float,
                environ: dict[str, str] | None = None, show_diff: bool = True, report: bool = False) -> int:
    from workspace_agent.output import render_json, render_text
    from workspace_agent.run import execute, record

    env = dict(os.environ) if environ is None else environ
    config, policy = load(options, env)
    log = (lambda message: None) if quiet or as_json else (lambda message: echo(message, err=True))
    outcome = execute(mode, config, policy, environ=env, wait=wait, log=log, record_run=not report)  # type: ignore[arg-type]
    delivery = None
    if report:
        delivery = deliver(outcome, force=False)
        record(outcome.desired.paths, outcome)
    if as_json:
        render_json(outcome, sys.stdout, extra={"report": delivery.summary()} if delivery else None)
    else:
        text = render_text(outcome, colour=sys.stdout.isatty(), quiet=quiet, show_diff=show_diff)
        echo(text, nl=False)
    if delivery is not None:
        show_delivery(delivery, config.secrets, quiet=quiet or as_json)
    return outcome.exit_code


def deliver(outcome: Any, *, force: bool) -> Any:
    """Report a run; a reporting problem never changes the run's own exit code."""
    from workspace_agent.report import Delivery, report_outcome

    try:
        return report_outcome(outcome, force=force)
    except AgentError as exc:
        return Delivery(error=exc.message)


def show_delivery(delivery: Any, secrets: tuple[str, ...], *, quiet: bool) -> None:
    """Problems always go to stderr (also with -q); the success line and notes only when not quiet."""
    from workspace_agent.redact import redact

    lines = [f"report: dropped: {why}" for why in delivery.dropped]
    if delivery.error or not quiet:
        lines.append(delivery.describe())
    if not quiet:
        lines += [f"report note: {note}" for note in delivery.notes]
    for line in lines:
        echo(f"workspace-agent: {redact(line, secrets)}", err=True)


def bootstrap(options: dict[str, Any], *, as_json: bool, quiet: bool, dry_run: bool, wait: float,
              detailed_exitcodes: bool, send_report: bool, environ: dict[str, str] | None = None,
              demo: bool = False) -> int:
    mode = "plan" if dry_run else "bootstrap"
    if send_report and (dry_run or demo):
        raise AgentError("--report cannot be combined with --dry-run or --demo: only real runs are reported")
    code = run_command(mode, options, as_json=as_json, quiet=quiet, wait=wait, environ=environ, report=send_report)
    if mode == "bootstrap" and not detailed_exitcodes and code & EXIT_CHANGED:
        code &= ~EXIT_CHANGED  # a start that fixed things succeeded: Coder must not see a failure
    return code


def parse(command: str, args: list[str]) -> dict[str, Any] | None:
    """The options of `command` from `args`, or None for anything this parser leaves to click."""
    from workspace_agent.config import SETTINGS

    own = _OWN[command]
    valued = {s.flag: s.name for s in SETTINGS} | {"--policy": "policy_file"}
    options: dict[str, Any] = {name: False for name, takes in own.values() if not takes}
    index = 0
    while index < len(args):
        arg = args[index]
        flag, equals, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if flag in own and not own[flag][1] and not equals:
            options[own[flag][0]] = True
        elif flag in valued or (flag in own and own[flag][1]):
            if not equals:
                index += 1
                if index >= len(args) or args[index].startswith("-"):
                    return None  # click says what is missing
                value = args[index]
            options[valued.get(flag) or own[flag][0]] = value
        else:
            return None  # --help, --demo, positional arguments, a typo: click's business
        index += 1
    if "wait" in options:
        try:
            options["wait"] = float(options["wait"])
        except ValueError:
            return None
    return options


def fast_main(command: str, args: list[str]) -> int | None:
    """Run `command` without click when `args` are a form parse() knows; None otherwise."""
    options = parse(command, args)
    if options is None:
        return None
    as_json, quiet = options.pop("as_json"), options.pop("quiet")
    try:
        if command == "bootstrap":
            return bootstrap(options, as_json=as_json, quiet=quiet, dry_run=options.pop("dry_run"),
                             wait=options.pop("wait", 60.0), detailed_exitcodes=options.pop("detailed_exitcodes"),
                             send_report=options.pop("send_report"))
        if command == "check":
            return run_command("check", options, as_json=as_json, quiet=quiet, wait=0,
                               show_diff=not options.pop("no_diff"), report=options.pop("send_report"))
        return run_command("plan", options, as_json=as_json, quiet=quiet, wait=0)
    except AgentError as exc:
        echo(f"workspace-agent: {exc.message}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        echo("workspace-agent: interrupted", err=True)
        return EXIT_INTERRUPTED
    except OSError as exc:  # an unexpected environment problem still gets a sentence (as cli.main)
        echo(f"workspace-agent: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}", err=True)
        return EXIT_ERROR
