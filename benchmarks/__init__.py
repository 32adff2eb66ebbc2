"""Benchmarks of the agent (one workspace) and the drift server (a fleet), rerunnable by anyone.

`python -m benchmarks` runs them, prints a table and writes JSON to benchmarks/results/. Not part
of the default test run: the numbers mean something only on a quiet machine (load is recorded).
"""
