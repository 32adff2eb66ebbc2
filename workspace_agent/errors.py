"""The one exception type for expected failures, and the exit codes the CLI documents.

Everything below the CLI raises `AgentError` with a sentence a developer can act on; the CLI
turns it into that sentence on stderr and the exit code, never a traceback.
"""

from __future__ import annotations

# Exit codes, Puppet-style (`--detailed-exitcodes`) so that a scheduler can tell them apart:
EXIT_OK = 0  # nothing to do / compliant
EXIT_ERROR = 1  # could not run at all (bad input, lock held, unexpected error)
EXIT_CHANGED = 2  # bootstrap changed something / check found drift
EXIT_PARTIAL = 4  # some rules failed (their error is in the output); the rest were applied
EXIT_CHANGED_PARTIAL = 6  # changes made (or drift found) and some rules failed
EXIT_INTERRUPTED = 130

# ai-usage / ai-models: one code per thing a developer does differently next (docs/ai-usage.md).
EXIT_NO_KEY = 10  # no key yet: run bootstrap or ask an admin
EXIT_KEY_REFUSED = 11  # the gateway refused the key (401/403): expired, revoked, or not allowed
EXIT_BUDGET = 12  # the key's budget is used up until it resets
EXIT_UNREACHABLE = 13  # the gateway (or provisioner) could not be reached, or was too slow
EXIT_NO_TRACKING = 14  # the gateway has no database: no keys, no usage tracking
EXIT_BAD_ANSWER = 15  # the gateway answered something else (rate limited, unknown error, not LiteLLM)


class AgentError(Exception):
    """An expected failure: `message` is shown as is, `exit_code` is returned by the CLI."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


def detailed_exit_code(changed: bool, failed: bool) -> int:
    """Combine 'changed/drift' and 'failed' the way Puppet's detailed exit codes do."""
    return (EXIT_CHANGED if changed else 0) | (EXIT_PARTIAL if failed else 0)
