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
    from workspace_agent.config import load_config, policy_path, read_policy
    from workspace_agent.desired import build_desired

    policy_flag = options.pop("policy_file", None)
    path, required = policy_path(policy_flag, os.environ)
    policy = read_policy(path, required)
    desired = build_desired(load_config(options, os.environ, policy), policy)
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


cli.help = (cli.help or "") + "\n\n" + EXIT_CODES_HELP


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turn expected failures into a sentence and an exit code."""
    try:
        result = cli.main(args=argv, prog_name="workspace-agent", standalone_mode=False)
    except AgentError as exc:
        click.echo(f"workspace-agent: {exc.message}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("workspace-agent: interrupted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("workspace-agent: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except OSError as exc:  # an unexpected environment problem still gets a sentence
        click.echo(f"workspace-agent: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}", err=True)
        return EXIT_ERROR
    return result if isinstance(result, int) else 0


def ai_usage_main() -> int:
    return main(["usage", *sys.argv[1:]])


def ai_models_main() -> int:
    return main(["models", *sys.argv[1:]])
