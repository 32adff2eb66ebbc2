"""The console entry point: the hot commands (status, plain watch, check, plan, bootstrap) run before click or pydantic are imported.

Coder's metadata block runs `workspace-agent status --short` every few seconds on every
workspace, a scheduler runs `check`, every start runs `bootstrap`: their usual forms are parsed
here (status.py, commands.py) and cost little more than the work they do. Everything else (and
any form the fast paths do not know, such as --help) goes to the full CLI.

Two costs of a short process are avoided on the hot paths: the cyclic garbage collector, which
walked every freshly imported function and class several times (these commands make no cycles
worth collecting: `bootstrap` over an 8.4 MB settings file peaks at 86 MB with or without it,
benchmarks/big_settings.py), and, when run as the console script, the interpreter's teardown of
~100 modules after the answer is out (the process ends with os._exit once stdout and stderr are
flushed; every file was closed by then, and locks die with the process). Together they were a
quarter of a `check`.
"""

from __future__ import annotations

import os
import sys

_HOT = ("status", "check", "plan", "bootstrap")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] and args[0] in _HOT:
        import gc

        gc.disable()  # for the command's whole (short) life: see the module docstring
        try:
            code = _hot(args)
        finally:
            gc.enable()
        if code is not None:
            return _finish(code) if argv is None else code
    elif args[:1] == ["watch"]:  # resident next to code-server: its memory matters (watch.fast_main)
        from workspace_agent.watch import fast_main as watch_main

        code = watch_main(args[1:], dict(os.environ))
        if code is not None:
            return code
    from workspace_agent.cli import main as cli_main

    return cli_main(args)


def _hot(args: list[str]) -> int | None:
    if args[0] == "status":
        from workspace_agent.status import fast_main

        try:
            return fast_main(args[1:], os.environ)
        except BrokenPipeError:
            return 0
    from workspace_agent.commands import fast_main as run_fast

    return run_fast(args[0], args[1:])


def _finish(code: int) -> int:
    """End the console script's process now that its answer is out (see the module docstring)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # a reader that went away; a closed stream
        pass
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main())
