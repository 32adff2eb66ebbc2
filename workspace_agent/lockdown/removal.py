"""Layer 3: one rule per forbidden extension (`extension.absent.<id>`), and how it is removed.

With the code-server CLI: `code-server --uninstall-extension ID --force`, one id per call (several
ids abort at the first missing one and remove none; `--force` is needed for an extension the user
marked built-in, and without it the CLI exits 0 having removed nothing), then the folder, which
the CLI leaves until the next server start. Without the CLI: the entry is dropped from
`extensions.json` (atomic write) and the folder is deleted. Either way the result is observed
again, so a removal that did not happen is an error, never a false "corrected".
"""

from __future__ import annotations

import json
from pathlib import Path

from workspace_agent import fsio, privilege
from workspace_agent.errors import AgentError
from workspace_agent.lockdown import extensions
from workspace_agent.lockdown.codeserver import find_binary
from workspace_agent.plan import ActionFact, ActionRule

CLI_TIMEOUT_S = 120.0


def rule(ext_id: str, extensions_dir: Path, user_data_dir: Path, code_server_bin: str,
         survey: extensions.Survey | None = None) -> ActionRule:
    """`code_server_bin` is resolved when fixing, so a wrong setting fails this rule, not the run.
    The rules of one plan share a `survey` of the extensions dir (one look for all their ids)."""
    look = survey or extensions.Survey(extensions_dir)

    def observe() -> ActionFact:
        found = look.find(ext_id)
        if not found.present and found.problems:  # cannot tell: one folder's manifest is unusable
            raise AgentError(f"cannot tell whether {ext_id} is installed: " + "; ".join(found.problems))
        if not found.present:
            return ActionFact(True)
        return ActionFact(False, found.describe(), "absent")

    def fix() -> None:
        look.forget()
        try:
            remove(ext_id, extensions_dir, user_data_dir, find_binary(code_server_bin))
        finally:
            look.forget()

    return ActionRule(f"extension.absent.{ext_id}", str(extensions_dir), observe, fix, title=f"{ext_id} not installed")


def remove(ext_id: str, extensions_dir: Path, user_data_dir: Path, cli: Path | None) -> None:
    found = extensions.find(extensions_dir, ext_id)
    if found.entries:
        if cli is not None:
            uninstall(cli, ext_id, extensions_dir, user_data_dir)
        else:
            drop_from_index(extensions_dir, ext_id)
    for folder in extensions.find(extensions_dir, ext_id).folders:
        delete_folder(folder.path, extensions_dir)
    left = extensions.find(extensions_dir, ext_id)
    if left.present:
        how = "code-server --uninstall-extension" if cli is not None and found.entries else "removal"
        raise AgentError(f"{ext_id} is still installed after {how}: {left.describe()}")


def uninstall(cli: Path, ext_id: str, extensions_dir: Path, user_data_dir: Path) -> None:
    command = [
        str(cli),
        "--uninstall-extension",
        ext_id,
        "--force",
        "--extensions-dir",
        str(extensions_dir),
        "--user-data-dir",
        str(user_data_dir),
    ]
    import subprocess  # only when an extension must go: not on the check path

    try:
        proc = subprocess.run(  # as the home's owner in a root run (privilege.subprocess_ids)
            command, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False,
            **privilege.subprocess_ids(extensions_dir),  # type: ignore[call-overload]
        )
    except subprocess.TimeoutExpired:
        raise AgentError(f"{cli} --uninstall-extension {ext_id} did not finish in {CLI_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise AgentError(f"cannot run {cli}: {exc.strerror or exc} (set code_server_bin to the code-server executable)") from None
    if proc.returncode != 0:
        said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise AgentError(
            f"{cli.name} --uninstall-extension {ext_id} failed (exit {proc.returncode}): {said[-1] if said else 'no output'}"
        )


def drop_from_index(extensions_dir: Path, ext_id: str) -> None:
    """Rewrite extensions.json without the entries of `ext_id` (compact, as code-server writes it)."""
    path = extensions_dir / extensions.INDEX
    fact = fsio.read_fact(path, extensions.MAX_MANIFEST_BYTES * 4)
    if fact.text is None:
        return
    try:
        items = json.loads(fact.text)
    except ValueError as exc:
        raise AgentError(f"{path} is not valid JSON ({exc}); not editing it") from None
    if not isinstance(items, list):
        raise AgentError(f"{path} is not a list of extensions; not editing it")

    def matches(item: object) -> bool:
        entry = extensions.entry_of(item, extensions_dir) if isinstance(item, dict) else None
        return entry is not None and entry.ext_id == ext_id

    kept = [item for item in items if not matches(item)]
    if len(kept) != len(items):
        fsio.atomic_write(path, json.dumps(kept, ensure_ascii=False, separators=(",", ":")))


def delete_folder(path: Path, extensions_dir: Path) -> None:
    """Delete one extension folder directly inside the extensions dir (a link: only the link).

    fsio.remove_tree reaches the extensions dir without following a link, so a linked
    extensions dir (or a linked parent) is refused, never a deletion elsewhere."""
    if path.parent != extensions_dir:
        raise AgentError(f"{path} is outside {extensions_dir}; not deleting it")
    fsio.remove_tree(path)
