"""Facts about code-server's extensions dir: where a given extension is, in any form.

An extension can be there as an `extensions.json` entry, as a folder, or both: a folder is named
`publisher.name-1.2.3[-platform]` by convention but is identified by its `package.json`
(publisher + name, compared case-insensitively), so a renamed sideloaded folder is found too. A
folder without an entry is still a risk: code-server rebuilds the index from the folders when
`extensions.json` is missing. Reading only; removal.py changes things.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from workspace_agent import fsio
from workspace_agent.errors import AgentError
from workspace_agent.record import Record

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

INDEX = "extensions.json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_FOLDER = r"^(?P<id>[^.\s]+\.[^\s]+?)-(?P<version>\d+\.\d+\.\d+[^\s]*)$"  # compiled on first use (re keeps it): a compliant check never needs it


class Entry(Record):
    """One extensions.json entry."""

    ext_id: str  # lower-case
    version: str | None
    folder: Path | None  # where the entry says the extension lives
    user_builtin: bool  # metadata.isBuiltin: the CLI needs --force to uninstall it


class Folder(Record):
    """One extension folder on disk."""

    ext_id: str  # lower-case
    version: str | None
    path: Path


class Found(Record):
    """Every trace of one extension in the extensions dir."""

    ext_id: str
    entries: list[Entry]
    folders: list[Folder]
    problems: tuple[str, ...] = ()  # folders whose package.json could not be read safely (a FIFO, a device, too big)

    @property
    def present(self) -> bool:
        return bool(self.entries or self.folders)

    def describe(self) -> str:
        parts = []
        listed = {e.folder for e in self.entries}
        for entry in self.entries:
            flags = " marked built-in by the user" if entry.user_builtin else ""
            parts.append(f"{entry.ext_id} {entry.version or '?'} (extensions.json{flags})")
        for folder in self.folders:
            if folder.path not in listed:
                parts.append(f"{folder.path.name}/ (folder only)")
        return ", ".join(parts)


def folder_id(name: str) -> tuple[str, str | None] | None:
    """`MS-Python.vscode-pylance-2024.1.1-linux-x64` → ("ms-python.vscode-pylance", "2024.1.1-linux-x64")."""
    match = re.match(_FOLDER, name)
    if match:
        return match.group("id").lower(), match.group("version")
    return None


# package.json → what it said, by (size, mtime, inode): each forbidden extension's rule scans every
# folder, and a manifest read once per run is enough unless it changed.
_MANIFESTS: dict[Path, tuple[tuple[int, int, int], tuple[str, str | None] | None]] = {}


def manifest_id(folder: Path, *, linked: bool = False) -> tuple[str, str | None] | None:
    """publisher.name and version from the folder's package.json (None: not an extension).

    Read with fsio (no link below the home, a folder that is a link followed only as the home's
    owner, no FIFO or device, capped): an unusable one raises AgentError naming it (never
    cached); a missing or unparsable one is simply not an extension's."""
    manifest = folder / "package.json"
    stamp = _stamp(manifest, linked)
    if stamp is None:
        return None
    known = _MANIFESTS.get(manifest)
    if known is not None and known[0] == stamp:
        return known[1]
    if linked:
        text = fsio.read_linked(manifest, MAX_MANIFEST_BYTES, follow=2)
    else:
        text = fsio.read_fact(manifest, MAX_MANIFEST_BYTES).text
    return _remember(manifest, stamp, text)


def _stamp(manifest: Path, linked: bool) -> tuple[int, int, int] | None:
    """The memo's key (None: no manifest); only a cache key, nothing is opened."""
    try:
        info = os.stat(manifest, follow_symlinks=linked)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns, info.st_ino


def _remember(manifest: Path, stamp: tuple[int, int, int], text: str | None) -> tuple[str, str | None] | None:
    found = _parse_manifest(text)
    _MANIFESTS[manifest] = (stamp, found)
    return found


def _manifest_ids(extensions_dir: Path, items: list[fsio.DirItem],
                  problems: list[str] | None) -> dict[str, tuple[str, str | None] | None]:
    """manifest_id of every folder; the folders that are not links are read in one pass below
    the extensions dir (fsio.read_below), not each from the home."""
    ids: dict[str, tuple[str, str | None] | None] = {}
    unread: list[tuple[str, Path, tuple[int, int, int]]] = []
    for item in items:
        manifest = extensions_dir / item.name / "package.json"
        stamp = _stamp(manifest, item.is_link)
        known = _MANIFESTS.get(manifest)
        if stamp is None or (known is not None and known[0] == stamp):
            ids[item.name] = None if stamp is None or known is None else known[1]
        elif item.is_link:
            try:
                ids[item.name] = manifest_id(extensions_dir / item.name, linked=True)
            except AgentError as exc:
                if problems is not None:
                    problems.append(exc.message)
        else:
            unread.append((item.name, manifest, stamp))
    facts = fsio.read_below(extensions_dir, [(name, "package.json") for name, _m, _s in unread], MAX_MANIFEST_BYTES)
    for (name, manifest, stamp), fact in zip(unread, facts, strict=True):
        if isinstance(fact, AgentError):
            if problems is not None:
                problems.append(fact.message)
            continue
        ids[name] = _remember(manifest, stamp, fact.text)
    return ids


def _parse_manifest(text: str | None) -> tuple[str, str | None] | None:
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    publisher, name = doc.get("publisher"), doc.get("name")
    if not isinstance(publisher, str) or not isinstance(name, str) or not publisher or not name:
        return None
    version = doc.get("version")
    return f"{publisher}.{name}".lower(), version if isinstance(version, str) else None


def read_index(extensions_dir: Path) -> list[dict[str, Any]] | None:
    """The parsed extensions.json (None when absent); a broken index is an error to report."""
    path = extensions_dir / INDEX
    fact = fsio.read_fact(path, MAX_MANIFEST_BYTES * 4)
    if fact.text is None:
        return None
    try:
        doc = json.loads(fact.text) if fact.text.strip() else []
    except ValueError as exc:
        raise AgentError(f"{path} is not valid JSON ({exc}); code-server cannot read it either: remove it and restart code-server") from None
    if not isinstance(doc, list):
        raise AgentError(f"{path} is not a list of extensions; remove it and restart code-server")
    return [item for item in doc if isinstance(item, dict)]


def entry_of(item: dict[str, Any], extensions_dir: Path) -> Entry | None:
    identifier = item.get("identifier")
    ext_id = identifier.get("id") if isinstance(identifier, dict) else None
    if not isinstance(ext_id, str):
        return None
    folder: Path | None = None
    relative = item.get("relativeLocation")
    location = item.get("location")
    if isinstance(relative, str) and relative and "/" not in relative and relative not in (".", ".."):
        folder = extensions_dir / relative
    elif isinstance(location, dict) and isinstance(location.get("path"), str):
        folder = Path(location["path"])
    elif isinstance(location, str) and location.startswith("/"):
        folder = Path(location)
    metadata = item.get("metadata")
    builtin = isinstance(metadata, dict) and metadata.get("isBuiltin") is True
    version = item.get("version")
    return Entry(ext_id.lower(), version if isinstance(version, str) else None, folder, builtin)


def folders(extensions_dir: Path, problems: list[str] | None = None) -> list[Folder]:
    """Every extension folder (package.json first, then the folder-name convention).

    The extensions dir is reached without following a link (fsio), so a linked one is an error,
    never a walk elsewhere; a folder that is itself a link is named by its folder name only (its
    manifest is read as the home's owner). A package.json that cannot be read safely goes to `problems`.
    """
    items = [item for item in fsio.list_dir(extensions_dir) or []
             if not item.name.startswith(".") and (item.is_dir or item.is_link)]
    ids = _manifest_ids(extensions_dir, items, problems)
    found: list[Folder] = []
    for item in items:
        ident = ids.get(item.name) or folder_id(item.name)
        if ident:
            found.append(Folder(ident[0], ident[1], extensions_dir / item.name))
    return found


def find(extensions_dir: Path, ext_id: str) -> Found:
    """Every entry and folder of `ext_id` (case-insensitive) in the extensions dir."""
    return _found_in(_look(extensions_dir), ext_id)


_Look = tuple[list[Entry], list[Folder], tuple[str, ...]]


def _look(extensions_dir: Path) -> _Look:
    """Every extensions.json entry, every folder, and what could not be read."""
    index = read_index(extensions_dir) or []
    entries = [e for e in (entry_of(item, extensions_dir) for item in index) if e]
    problems: list[str] = []
    return entries, folders(extensions_dir, problems), tuple(problems)


def _found_in(look: _Look, ext_id: str) -> Found:
    wanted = ext_id.lower()
    entries, on_disk, problems = look
    return Found(wanted, [e for e in entries if e.ext_id == wanted], [f for f in on_disk if f.ext_id == wanted], problems)


class Survey:
    """The extensions dir read once for all the forbidden ids of one plan (each look lists every
    folder: ~1 ms with 40 extensions, once per forbidden id before); `forget()` after any change,
    so whatever follows a removal is observed afresh."""

    def __init__(self, extensions_dir: Path) -> None:
        self.extensions_dir = extensions_dir
        self._look: _Look | None = None

    def find(self, ext_id: str) -> Found:
        if self._look is None:
            self._look = _look(self.extensions_dir)
        return _found_in(self._look, ext_id)

    def forget(self) -> None:
        self._look = None
