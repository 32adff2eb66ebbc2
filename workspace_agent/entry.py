"""The console entry point: `status` (and plain `watch`) run before click, pydantic or httpx are imported.

Coder's metadata block runs `workspace-agent status --short` every few seconds on every
workspace, so that path costs little more than starting Python. Everything else (and any
`status` form the fast path does not know, such as --help) goes to the full CLI.
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
    if args[:1] == ["watch"]:  # resident next to code-server: its memory matters (watch.fast_main)
        from workspace_agent.watch import fast_main as watch_main

        code = watch_main(args[1:], dict(os.environ))
        if code is not None:
            return code
    from workspace_agent.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
