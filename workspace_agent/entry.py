"""The console entry point: the hot commands (status, plain watch, check, plan, bootstrap) run before click or pydantic are imported.

Coder's metadata block runs `workspace-agent status --short` every few seconds on every
workspace, a scheduler runs `check`, every start runs `bootstrap`: their usual forms are parsed
here (status.py, commands.py) and cost little more than the work they do. Everything else (and
any form the fast paths do not know, such as --help) goes to the full CLI.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["status"]:
        from workspace_agent.status import fast_main

        try:
            code = fast_main(args[1:], os.environ)
        except BrokenPipeError:
            return 0
        if code is not None:
            return code
    elif args[:1] == ["watch"]:  # resident next to code-server: its memory matters (watch.fast_main)
        from workspace_agent.watch import fast_main as watch_main

        code = watch_main(args[1:], dict(os.environ))
        if code is not None:
            return code
    elif args[:1] in (["check"], ["plan"], ["bootstrap"]):
        from workspace_agent.commands import fast_main as run_fast

        code = run_fast(args[0], args[1:])
        if code is not None:
            return code
    from workspace_agent.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
