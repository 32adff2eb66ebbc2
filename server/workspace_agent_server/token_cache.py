"""Workspace tokens seen valid, in memory: a known token is let in without a database read (which
cost a thread hop and a query on every report).

The cache only lets a request *in*; it never decides that a report is written. The transaction
that writes a report checks the token again (`queries.ingest` with `token_hash`), so a token
revoked or replaced by a new enrollment, in this process or in another worker, writes nothing
from the moment that change commits. Revoke and enroll also drop the workspace's entry here, so
in this process such a token is refused before its body is even read. No TTL is needed.

Only the event loop's thread touches it (handlers put and forget; lookups run in threads but
their results are put back here), so it has no lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MAX_ENTRIES = 100_000


@dataclass
class TokenCache:
    max_entries: int = DEFAULT_MAX_ENTRIES
    # Bumped by every forget: a lookup that started before it must not put its answer back.
    generation: int = 0
    _by_hash: dict[str, str] = field(default_factory=dict)  # token hash → workspace id
    _by_workspace: dict[str, str] = field(default_factory=dict)  # workspace id → token hash

    def __len__(self) -> int:
        return len(self._by_hash)

    def get(self, hashed: str) -> str | None:
        return self._by_hash.get(hashed)

    def put(self, hashed: str, workspace_id: str, generation: int) -> None:
        """Remember a token read as valid, unless something was forgotten since the read began
        (`generation` is the value before the read)."""
        if generation != self.generation:
            return
        self._drop(workspace_id)
        while len(self._by_hash) >= self.max_entries:  # oldest first (dicts keep insertion order)
            oldest = next(iter(self._by_hash))
            self._drop(self._by_hash[oldest])
        self._by_hash[hashed] = workspace_id
        self._by_workspace[workspace_id] = hashed

    def forget(self, workspace_id: str) -> None:
        """The workspace's token was revoked or replaced: drop it (and void lookups in flight)."""
        self.generation += 1
        self._drop(workspace_id)

    def discard(self, hashed: str) -> None:
        """Drop one token found invalid by the write (e.g. revoked through another worker)."""
        workspace_id = self._by_hash.get(hashed)
        if workspace_id is not None:
            self._drop(workspace_id)

    def _drop(self, workspace_id: str) -> None:
        hashed = self._by_workspace.pop(workspace_id, None)
        if hashed is not None:
            self._by_hash.pop(hashed, None)
