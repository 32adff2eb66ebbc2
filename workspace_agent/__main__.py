"""`python -m workspace_agent` runs the same entry point as the console script."""

from workspace_agent.entry import main

if __name__ == "__main__":
    raise SystemExit(main())
