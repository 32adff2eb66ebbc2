"""The `workspace-agent` command line: wires options to commands and maps failures to exit codes.

Nothing below this module calls sys.exit or prints a traceback for an expected failure: they
raise AgentError, which becomes one sentence on stderr and its exit code here.
"""

from __future__ import annotations

import inspect
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from workspace_agent import __version__
from workspace_agent.errors import EXIT_CHANGED, EXIT_ERROR, EXIT_INTERRUPTED, AgentError

DEMO_KEY = "sk-demo-0000000000000000workspace"

EXIT_CODES_HELP = """\b
Exit codes (check and plan; bootstrap with --detailed-exitcodes):
  0  nothing to change / compliant
  1  could not run (bad input, lock held, unexpected error)
  2  changes made / drift found (plain bootstrap exits 0 here)
  4  some rules failed (see their errors); the others were applied / checked
  6  changes made or drift found, and some rules failed
"""


def _setting_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One CLI option per input setting, generated from config.SETTINGS (same names everywhere)."""
    from workspace_agent.config import SETTINGS

    for setting in reversed(SETTINGS):
        env_note = f" [env: {setting.env}]" if setting.env else ""
        func = click.option(setting.flag, setting.name, default=None, help=setting.help + env_note)(func)
    func = click.option(
        "--policy",
        "policy_file",
        default=None,
        help="admin policy TOML [env: WORKSPACE_AGENT_POLICY; default /etc/workspace-agent/policy.toml]",
    )(func)
    return func


def _output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--json", "as_json", is_flag=True, help="print one JSON object (stable fields)")(func)
    func = click.option("-q", "--quiet", is_flag=True, help="print only errors")(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="workspace-agent")
def cli() -> None:
    """Configure this workspace's AI tools to go through LiteLLM, keep them so, and report drift.

    \b
    Examples:
      workspace-agent bootstrap                 # at workspace start (Coder startup_script)
      workspace-agent bootstrap --demo          # try it: a throwaway home and a demo key
      workspace-agent plan                      # what bootstrap would change, as a diff
      workspace-agent check --json              # read-only drift check for schedulers
      workspace-agent check --report -q         # scheduled: check, report drift to the server
      workspace-agent status --short            # one line for a Coder metadata block
      workspace-agent bootstrap --enforcement-level design-first --home /home/coder

    Settings come from flags, then environment variables, then the admin policy file
    (/etc/workspace-agent/policy.toml, [agent] table), then defaults.
    """


def _load(options: dict[str, Any], environ: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """Flags + environment + policy file → (AgentConfig, policy)."""
    from workspace_agent.policyfile import load

    return load(options, environ)


def _run_command(mode: str, options: dict[str, Any], *, as_json: bool, quiet: bool, wait: float,
                 environ: dict[str, str] | None = None, show_diff: bool = True, report: bool = False) -> int:
    from workspace_agent.output import render_json, render_text
    from workspace_agent.run import execute, record

    env = dict(os.environ) if environ is None else environ
    config, policy = _load(options, env)
    log = (lambda message: None) if quiet or as_json else (lambda message: click.echo(message, err=True))
    outcome = execute(mode, config, policy, environ=env, wait=wait, log=log, record_run=not report)  # type: ignore[arg-type]
    delivery = None
    if report:
        delivery = _deliver(outcome, force=False)
        record(outcome.desired.paths, outcome)
    if as_json:
        render_json(outcome, sys.stdout, extra={"report": delivery.summary()} if delivery else None)
    else:
        text = render_text(outcome, colour=sys.stdout.isatty(), quiet=quiet, show_diff=show_diff)
        click.echo(text, nl=False)
    if delivery is not None:
        _show_delivery(delivery, config.secrets, quiet=quiet or as_json)
    return outcome.exit_code


def _deliver(outcome: Any, *, force: bool) -> Any:
    """Report a run; a reporting problem never changes the run's own exit code."""
    from workspace_agent.report import Delivery, report_outcome

    try:
        return report_outcome(outcome, force=force)
    except AgentError as exc:
        return Delivery(error=exc.message)


def _show_delivery(delivery: Any, secrets: tuple[str, ...], *, quiet: bool) -> None:
    """Problems always go to stderr (also with -q); the success line and notes only when not quiet."""
    from workspace_agent.redact import redact

    lines = [f"report: dropped: {why}" for why in delivery.dropped]
    if delivery.error or not quiet:
        lines.append(delivery.describe())
    if not quiet:
        lines += [f"report note: {note}" for note in delivery.notes]
    for line in lines:
        click.echo(f"workspace-agent: {redact(line, secrets)}", err=True)


@cli.command()
@_setting_options
@_output_options
@click.option("--dry-run", is_flag=True, help="show what would change (same as `plan`); write nothing")
@click.option("--demo", is_flag=True, help="run on a throwaway home with a demo key; needs no services")
@click.option("--wait", default=60.0, show_default=True, help="seconds to wait for another run's lock")
@click.option(
    "--detailed-exitcodes", is_flag=True, help="exit 2 when changes were made (Puppet-style); default 0"
)
@click.option("--report", "send_report", is_flag=True, help="send the result to the drift server (never fails the run)")
def bootstrap(
    as_json: bool, quiet: bool, dry_run: bool, demo: bool, wait: float, detailed_exitcodes: bool,
    send_report: bool, **options: Any
) -> int:
    """Get the key, write the AI clients' configs, apply the lockdown.

    Safe to run at every start and on a schedule: a second run changes nothing.
    """
    environ = None
    if demo:
        home = options.get("home") or tempfile.mkdtemp(prefix="workspace-agent-demo-")
        options.update(
            home=home,
            api_key=options.get("api_key") or DEMO_KEY,
            managed_dir=str(Path(home) / "etc-opencode"),
            claude_managed_dir=str(Path(home) / "etc-claude-code"),
        )
        environ = {"PATH": os.environ.get("PATH", "")}  # ignore this machine's XDG/Coder variables
        if not quiet and not as_json:
            click.echo(f"demo: home {home}, demo key, nothing outside that directory is touched", err=True)
    mode = "plan" if dry_run else "bootstrap"
    if send_report and (dry_run or demo):
        raise AgentError("--report cannot be combined with --dry-run or --demo: only real runs are reported")
    code = _run_command(mode, options, as_json=as_json, quiet=quiet, wait=wait, environ=environ, report=send_report)
    if mode == "bootstrap" and not detailed_exitcodes and code & EXIT_CHANGED:
        code &= ~EXIT_CHANGED  # a start that fixed things succeeded: Coder must not see a failure
    return code


@cli.command()
@_setting_options
@_output_options
def plan(as_json: bool, quiet: bool, **options: Any) -> int:
    """Show, as a unified diff, what bootstrap would change. Writes nothing, no network."""
    return _run_command("plan", options, as_json=as_json, quiet=quiet, wait=0)


CHECK_EXIT_CODES = """\b
Exit codes:
  0  compliant: every rule is as required
  1  could not check at all (bad input, unreadable policy, unexpected error)
  2  drift found (see the table and the diff)
  4  some rules could not be checked (their errors are shown); the others are compliant
  6  drift found, and some rules could not be checked
With --report, a reporting problem is printed on stderr but never changes the exit code."""


@cli.command()
@_setting_options
@_output_options
@click.option("--no-diff", is_flag=True, help="only the rule table")
@click.option("--report", "send_report", is_flag=True, help="send the result to the drift server (on change / heartbeat)")
def check(as_json: bool, quiet: bool, no_diff: bool, send_report: bool, **options: Any) -> int:
    """Read-only drift check: is everything as required? Never writes managed files.

    No network, except with --report (the drift server, and the key provisioner for the key's
    enforcement level).
    """
    return _run_command(
        "check", options, as_json=as_json, quiet=quiet, wait=0, show_diff=not no_diff, report=send_report
    )


check.help = inspect.cleandoc(check.help or "") + "\n\n" + CHECK_EXIT_CODES
@cli.command()
@click.option(
    "--print",
    "whole",
    is_flag=True,
    help="print the whole key, only into a pipe (Claude Code's apiKeyHelper, $(...)); never to a terminal",
)
@click.option(
    "--file",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the key file [default: ~/.config/workspace-agent/litellm.key]",
)
def key(whole: bool, key_file: Path | None) -> int:
    """Show the workspace's virtual key masked (sk-…abcd), or hand it whole to a program."""
    from workspace_agent.keyhelper import key_output
    from workspace_agent.paths import Paths

    path = key_file or Paths.for_home(Path.home()).key_file
    out = key_output(path, whole=whole, stdout_is_tty=sys.stdout.isatty())
    if out.warning:
        click.echo(f"workspace-agent: warning: {out.warning}", err=True)
    click.echo(out.stdout, nl=False)
    return 0


_SHELLS = ("bash", "zsh", "fish")


def _default_shell() -> str:
    name = Path(os.environ.get("SHELL", "bash")).name
    return name if name in _SHELLS else "bash"


@cli.command("shell-init")
@click.argument("shell", type=click.Choice(_SHELLS), required=False)
@_setting_options
def shell_init(shell: str | None, **options: Any) -> int:
    """Print the gateway environment for SHELL, for dotfiles the agent should not edit.

    \b
    bash/zsh:  eval "$(workspace-agent shell-init bash)"
    fish:      workspace-agent shell-init fish | source
    The key is read from its 0600 file by the printed code; it is never printed.
    A start file that already runs `workspace-agent shell-init` gets no second line from bootstrap.
    """
    from workspace_agent.clients.shell import snippet
    from workspace_agent.desired import build_desired

    config, policy = _load(options, dict(os.environ))
    desired = build_desired(config, policy)
    click.echo(snippet(desired, shell or _default_shell()), nl=False)
    return 0


@cli.command()
@click.argument("shell", type=click.Choice(_SHELLS))
def completion(shell: str) -> int:
    """Print the shell completion script for this CLI.

    \b
    bash:  eval "$(workspace-agent completion bash)"   (bootstrap also installs it for bash-completion)
    zsh:   eval "$(workspace-agent completion zsh)"
    fish:  workspace-agent completion fish | source    (bootstrap installs it when fish is present)
    """
    from workspace_agent.clients.shell import completion_script

    click.echo(completion_script(shell), nl=False)
    return 0




@cli.command(name="report")
@_setting_options
@_output_options
@click.option("--force", is_flag=True, help="send a report even if nothing changed since the last one")
def report_command(as_json: bool, quiet: bool, force: bool, **options: Any) -> int:
    """Check (read-only) and send the result to the drift server.

    \b
    A report is sent when something changed since the last one, when the heartbeat is due
    (the interval the server gave at enrollment, with jitter), or with --force. Reports that
    cannot be sent wait in a bounded queue under ~/.local/state/workspace-agent/report/ and go
    out first, in order, next time. The first report enrolls this workspace with
    DRIFT_ENROLLMENT_SECRET; the token it gets is kept 0600 in ~/.config/workspace-agent/.

    \b
    Exit codes:
      0  delivered, or nothing new to send
      1  not configured (DRIFT_SERVER_URL, CODER_WORKSPACE_ID), or reports still wait
         in the queue (server down, enrollment refused); the reason is on stderr
    """
    import json

    from workspace_agent.redact import redact
    from workspace_agent.report import report_outcome
    from workspace_agent.run import execute, record

    env = dict(os.environ)
    config, policy = _load(options, env)
    outcome = execute("check", config, policy, environ=env, wait=0, record_run=False)
    delivery = report_outcome(outcome, force=force)
    record(outcome.desired.paths, outcome)
    if as_json:
        data = {"check_exit_code": outcome.exit_code, **delivery.summary()}
        click.echo(redact(json.dumps(data, indent=2, ensure_ascii=False), config.secrets))
        return 0 if delivery.ok else EXIT_ERROR
    if delivery.ok and not quiet:
        click.echo(redact(delivery.describe(), config.secrets))
    if not delivery.ok:
        _show_delivery(delivery, config.secrets, quiet=quiet)
    elif not quiet:
        for note in delivery.notes:
            click.echo(f"note: {redact(note, config.secrets)}", err=True)
    return 0 if delivery.ok else EXIT_ERROR


@cli.command()
@_setting_options
@click.option("--debounce", default=50, show_default=True, type=click.IntRange(min=0, max=1000),
              help="milliseconds of quiet that end a burst of writes before values are put back")
@click.option("-q", "--quiet", is_flag=True, help="print only problems (corrections still go to the log)")
def watch(debounce: int, quiet: bool, **options: Any) -> int:
    """Stay running and put a changed locked value back within a second (start it next to code-server).

    \b
    Watches the User and Machine settings and the managed client configs through the kernel's
    file events; each correction is one line on stderr and in ~/.local/state/workspace-agent/watch.log,
    and goes to the drift server when DRIFT_SERVER_URL is set (after `report` has enrolled).
    Stops cleanly on SIGTERM; a second watcher for the same user refuses to start (exit 1).
    """
    from workspace_agent.watch import run

    env = dict(os.environ)
    config, policy = _load(options, env)
    say = (lambda m: None) if quiet else (lambda m: click.echo(f"workspace-agent: {m}", err=True))
    return run(config, policy, environ=env, debounce_s=debounce / 1000, say=say)


@cli.command()
@click.option("--short", "form", flag_value="short", help="one line for a Coder metadata block")
@click.option("--json", "form", flag_value="json", help="print one JSON object")
@click.option("--home", default=None, help="home directory of the workspace user [env: HOME]")
def status(form: str | None, home: str | None) -> int:
    """What the last check found and how reporting is doing.

    Reads the last-run record and the report queue only: no network, no checks; fast enough for
    a Coder metadata block (`status --short`, e.g. "compliant 14/14 · key ok · reported 2m ago").
    """
    from workspace_agent.status import fast_main

    args = ([f"--{form}"] if form else []) + (["--home", home] if home else [])
    code = fast_main(args, os.environ)
    if code is None:
        raise AgentError(f"--home={home!r} must be an absolute path")
    return code


GATEWAY_EXIT_CODES_HELP = """\b
Exit codes:
  0   answered
  1   could not run (bad input, unexpected error)
  10  no key yet: run `workspace-agent bootstrap`, or ask an admin for one
  11  the gateway refused the key (401/403: expired, revoked, unknown, model not allowed)
  12  the key's budget is used up (the message says when it resets)
  13  the gateway (or provisioner) cannot be reached, or did not answer within --timeout
  14  the gateway has no database: it tracks no usage and cannot look up keys
  15  the gateway answered something else (rate limited, an unknown error, not LiteLLM)
"""


def _gateway_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--timeout",
        default=10.0,
        show_default=True,
        type=click.FloatRange(min=0.1, max=600),
        help="seconds to wait for each answer",
    )(func)
    func = click.option("--json", "as_json", is_flag=True, help="print one JSON object (docs/ai-usage.md)")(func)
    return func


@cli.command(epilog=GATEWAY_EXIT_CODES_HELP)
@_setting_options
@_gateway_options
@click.option(
    "--source",
    type=click.Choice(["auto", "litellm", "provisioner"]),
    default="auto",
    show_default=True,
    help="where the numbers come from; auto: the key provisioner when PROVISIONER_URL is set, else LiteLLM",
)
@click.option("--by-model", is_flag=True, help="also show spend per model (when the gateway offers it)")
@click.option("--short", is_flag=True, help="one line (for a Coder metadata block)")
def usage(as_json: bool, timeout: float, source: str, by_model: bool, short: bool, **options: Any) -> int:
    """This workspace's AI spend, budget left, reset time, limits, key status and level (ai-usage)."""
    from workspace_agent.self_service import run_usage

    return run_usage(
        options, dict(os.environ), as_json=as_json, short=short, source=source, by_model=by_model, timeout=timeout  # type: ignore[arg-type]
    )


@cli.command(epilog=GATEWAY_EXIT_CODES_HELP)
@_setting_options
@_gateway_options
@click.option("--check", is_flag=True, help="send a one-token request to the default model: latency, enforcement")
def models(as_json: bool, timeout: float, check: bool, **options: Any) -> int:
    """The models this workspace's key may use (live), the default, which tool uses which (ai-models)."""
    from workspace_agent.self_service import run_models

    return run_models(options, dict(os.environ), as_json=as_json, check=check, timeout=timeout)


cli.help = inspect.cleandoc(cli.help or "") + "\n\n" + EXIT_CODES_HELP


def main(argv: list[str] | None = None, prog: str = "workspace-agent") -> int:
    """Entry point: run the CLI, turn expected failures into a sentence and an exit code."""
    try:
        result = cli.main(args=argv, prog_name="workspace-agent", standalone_mode=False)
    except AgentError as exc:
        click.echo(f"{prog}: {exc.message}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo(f"{prog}: interrupted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo(f"{prog}: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except OSError as exc:  # an unexpected environment problem still gets a sentence
        click.echo(f"{prog}: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}", err=True)
        return EXIT_ERROR
    return result if isinstance(result, int) else 0


def ai_usage_main() -> int:
    return main(["usage", *sys.argv[1:]], prog="ai-usage")


def ai_models_main() -> int:
    return main(["models", *sys.argv[1:]], prog="ai-models")
