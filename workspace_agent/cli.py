"""The `workspace-agent` command line: wires options to commands and maps failures to exit codes.

Nothing below this module calls sys.exit or prints a traceback for an expected failure: they
raise AgentError, which becomes one sentence on stderr and its exit code here.
"""

from __future__ import annotations

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
      workspace-agent bootstrap --enforcement-level design-first --home /home/coder

    Settings come from flags, then environment variables, then the admin policy file
    (/etc/workspace-agent/policy.toml, [agent] table), then defaults.
    """


def _run_command(mode: str, options: dict[str, Any], *, as_json: bool, quiet: bool, wait: float,
                 environ: dict[str, str] | None = None, show_diff: bool = True) -> int:
    from workspace_agent.config import load_config, policy_path, read_policy
    from workspace_agent.output import render_json, render_text
    from workspace_agent.run import execute

    env = dict(os.environ) if environ is None else environ
    policy_flag = options.pop("policy_file", None)
    path, required = policy_path(policy_flag, env)
    policy = read_policy(path, required)
    config = load_config(options, env, policy)
    log = (lambda message: None) if quiet or as_json else (lambda message: click.echo(message, err=True))
    outcome = execute(mode, config, policy, environ=env, wait=wait, log=log)  # type: ignore[arg-type]
    if as_json:
        from workspace_agent.output import render_json

        render_json(outcome, sys.stdout)
    else:
        text = render_text(outcome, colour=sys.stdout.isatty(), quiet=quiet, show_diff=show_diff)
        click.echo(text, nl=False)
    return outcome.exit_code


@cli.command()
@_setting_options
@_output_options
@click.option("--dry-run", is_flag=True, help="show what would change (same as `plan`); write nothing")
@click.option("--demo", is_flag=True, help="run on a throwaway home with a demo key; needs no services")
@click.option("--wait", default=60.0, show_default=True, help="seconds to wait for another run's lock")
@click.option(
    "--detailed-exitcodes", is_flag=True, help="exit 2 when changes were made (Puppet-style); default 0"
)
def bootstrap(
    as_json: bool, quiet: bool, dry_run: bool, demo: bool, wait: float, detailed_exitcodes: bool, **options: Any
) -> int:
    """Get the key, write the Roo Code and OpenCode configs, apply the lockdown.

    Safe to run at every start and on a schedule: a second run changes nothing.
    """
    environ = None
    if demo:
        home = options.get("home") or tempfile.mkdtemp(prefix="workspace-agent-demo-")
        options.update(home=home, api_key=options.get("api_key") or DEMO_KEY, managed_dir=str(Path(home) / "etc-opencode"))
        environ = {"PATH": os.environ.get("PATH", "")}  # ignore this machine's XDG/Coder variables
        if not quiet and not as_json:
            click.echo(f"demo: home {home}, demo key, nothing outside that directory is touched", err=True)
    mode = "plan" if dry_run else "bootstrap"
    code = _run_command(mode, options, as_json=as_json, quiet=quiet, wait=wait, environ=environ)
    if mode == "bootstrap" and not detailed_exitcodes and code & EXIT_CHANGED:
        code &= ~EXIT_CHANGED  # a start that fixed things succeeded: Coder must not see a failure
    return code


@cli.command()
@_setting_options
@_output_options
def plan(as_json: bool, quiet: bool, **options: Any) -> int:
    """Show, as a unified diff, what bootstrap would change. Writes nothing, no network."""
    return _run_command("plan", options, as_json=as_json, quiet=quiet, wait=0)


@cli.command()
@_setting_options
@_output_options
@click.option("--no-diff", is_flag=True, help="only the rule table")
def check(as_json: bool, quiet: bool, no_diff: bool, **options: Any) -> int:
    """Read-only drift check: is everything as required? Never writes managed files, no network."""
    return _run_command("check", options, as_json=as_json, quiet=quiet, wait=0, show_diff=not no_diff)


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


cli.help = (cli.help or "") + "\n\n" + EXIT_CODES_HELP


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
