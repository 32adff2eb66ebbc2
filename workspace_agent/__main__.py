"""`python -m workspace_agent` runs the same CLI as the console script."""

from workspace_agent.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
