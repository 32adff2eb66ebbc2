"""Fault-injection helpers: prepared homes, agent processes, the SIGKILL harness."""
