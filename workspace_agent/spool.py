"""A bounded on-disk queue for drift reports that could not be sent yet.

One file per report (`000000000042.json`, written atomically, 0600), ordered by a sequence
number that only grows (kept in `next-seq` beside them), never by wall time: a clock that jumps
back cannot reorder what waits. Bounded by a number of files and a number of bytes; when full,
the oldest reports are dropped first and the caller gets a sentence saying so. A file that
cannot be read back is renamed `*.corrupt` so that the others still go out.

Standard library only: `status` counts the queue without importing anything heavy.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

TYPE_CHECKING = False  # typing itself is not imported: `status --short` runs every few seconds
if TYPE_CHECKING:
    from typing import Any

from workspace_agent import fsio
from workspace_agent.errors import AgentError

MAX_FILES = 200
MAX_BYTES = 8 * 1024 * 1024
MAX_ENTRY_BYTES = 2 * 1024 * 1024  # one report is at most 512 KB on the wire
MAX_CORRUPT_KEPT = 20  # set-aside files kept for a person to look at; older ones are deleted

_ENTRY = re.compile(r"^(\d{12})\.json$")
MAX_SEQ = 10**12  # sequence numbers are the 12-digit file names
_SEQ_FILE = "next-seq"


@dataclass(frozen=True)
class Entry:
    """One waiting report: its place in the queue and its file."""

    seq: int
    path: Path
    size: int


@dataclass(frozen=True)
class Spool:
    """The queue in `directory`, with its bounds."""

    directory: Path
    max_files: int = MAX_FILES
    max_bytes: int = MAX_BYTES

    def entries(self) -> list[Entry]:
        """The waiting reports, oldest (lowest sequence number) first."""
        found: list[Entry] = []
        try:
            scan = fsio.list_dir(self.directory) or []
        except AgentError as exc:
            raise AgentError(f"cannot list the report queue: {exc.message}") from None
        for item in scan:
            match = _ENTRY.match(item.name)
            if match is not None and item.is_file:
                found.append(Entry(int(match.group(1)), self.directory / item.name, item.size))
        return sorted(found, key=lambda e: e.seq)

    def enqueue(self, item: dict[str, Any], queued_at: str) -> tuple[Entry, list[str]]:
        """Append `item` (JSON-able) after everything already waiting; notes name what was dropped."""
        existing = self.entries()
        seq = max(self._stored_next_seq(), existing[-1].seq + 1 if existing else 1)
        with contextlib.suppress(AgentError):  # best effort: without it the files still give the order
            fsio.atomic_write(self.directory / _SEQ_FILE, f"{seq + 1}\n", 0o600)
        text = json.dumps({"seq": seq, "queued_at": queued_at, "item": item}, ensure_ascii=False)
        path = self.directory / f"{seq:012d}.json"
        fsio.atomic_write(path, text + "\n", 0o600)
        entry = Entry(seq, path, len(text.encode("utf-8")) + 1)
        return entry, self._enforce_bounds([*existing, entry])

    def read(self, entry: Entry) -> dict[str, Any] | None:
        """The item stored in `entry`; None when it is gone or was set aside as corrupt."""
        try:
            fact = fsio.read_fact(entry.path, max_bytes=max(self.max_bytes, MAX_ENTRY_BYTES))
        except AgentError as exc:
            self.set_aside(entry)
            raise AgentError(f"queued report {entry.path.name} set aside: {exc.message}") from None
        if fact.text is None:
            return None
        try:
            data = json.loads(fact.text)
        except ValueError:
            data = None
        if not (isinstance(data, dict) and data.get("seq") == entry.seq and isinstance(data.get("item"), dict)):
            self.set_aside(entry)
            raise AgentError(
                f"queued report {entry.path.name} was not readable (damaged file); "
                f"moved aside as {entry.path.name}.corrupt, the other reports still go out"
            )
        item: dict[str, Any] = data["item"]
        return item

    def remove(self, entry: Entry) -> None:
        """Forget a delivered (or dropped) report; a file already gone is fine."""
        fsio.remove_file(entry.path)

    def set_aside(self, entry: Entry) -> None:
        """Rename a damaged file to `*.corrupt` (kept for a person, out of the queue)."""
        try:
            fsio.rename(entry.path, entry.path.name + ".corrupt")
        except AgentError as exc:
            raise AgentError(f"cannot move aside the damaged report: {exc.message}") from None
        with contextlib.suppress(AgentError):
            corrupt = [item.name for item in fsio.list_dir(self.directory) or [] if item.name.endswith(".json.corrupt")]
            for old in corrupt[:-MAX_CORRUPT_KEPT]:
                fsio.remove_file(self.directory / old)

    def size(self) -> tuple[int, int]:
        """(number of waiting reports, their bytes)."""
        entries = self.entries()
        return len(entries), sum(e.size for e in entries)

    def _stored_next_seq(self) -> int:
        try:  # a FIFO, device or link in its place is refused at once, never waited on
            text = fsio.read_fact(self.directory / _SEQ_FILE, max_bytes=64).text
            value = int((text or "").strip())
        except (AgentError, ValueError):
            return 1  # lost or damaged: the files themselves still give the order
        # A number that does not fit the 12-digit file names would name a file `entries()` never
        # sees: the report would be lost. Such a value is damage; the files give the order.
        return value if 1 <= value < MAX_SEQ else 1

    def _enforce_bounds(self, entries: list[Entry]) -> list[str]:
        """Drop the oldest reports until the queue fits; never the newest one."""
        notes: list[str] = []
        dropped = 0
        while len(entries) > 1 and (len(entries) > self.max_files or sum(e.size for e in entries) > self.max_bytes):
            self.remove(entries.pop(0))
            dropped += 1
        if dropped:
            notes.append(
                f"the report queue was full ({self.max_files} reports / {self.max_bytes // 1024} KB): "
                f"dropped the {dropped} oldest"
            )
        return notes
