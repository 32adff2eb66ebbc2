"""Zoo Code (`ZooCodeOrganization.zoo-code`), the community continuation of Roo Code.

Roo Code's repository was archived in May 2026; Zoo Code carries it on and the workspace image
ships it. Read from its source (Zoo-Code-Org/Zoo-Code, 3.80-3.82):

* It reads its own VS Code setting `zoo-code.autoImportSettingsPath` at activation, never
  `roo-cline.…`, and imports the same file format as Roo Code. It checks each profile and each
  `globalSettings` key on its own and skips a bad one with an `[AutoImport] Warning:` line in its
  `Zoo-Code` output channel, so the file is the one Roo Code gets (roo_code.import_document),
  kept in its own 0600 file so either client can be configured without the other.
* Global rules: 3.80 reads `~/.roo/rules/`; 3.82 reads `~/.zoo/rules/` and falls back to
  `~/.roo/rules/` only when `~/.zoo/rules/` does not exist. The enforcement text goes to both
  (the `~/.roo` one is the rule Roo Code has too, so a workspace with both writes it once).
  Once `~/.zoo/rules/` exists, 3.82 no longer reads a user's own files in `~/.roo/rules/`: the
  report-only rule `zoo.own-rules` names them (a note, never drift; the files are the user's).
* The import's `globalSettings.customModes` (the review workflows) are saved as global custom
  modes in the extension's storage, as with Roo Code.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from workspace_agent.clients import roo_code
from workspace_agent.clients.base import Client

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:  # pragma: no cover
    from workspace_agent.desired import Desired
    from workspace_agent.keysource import KeyResolution
    from workspace_agent.plan import ActionRule, Rule

SETTINGS_KEY = "zoo-code.autoImportSettingsPath"
EXTENSION_ID = "zoocodeorganization.zoo-code"
RULE_FILE_NAME = "00-platform-enforcement.md"
MAX_RULE_ENTRIES = 200  # the user's own rule files looked at, at most (this runs at every check)


def import_file(desired: Desired) -> Path:
    return desired.paths.config_home / "zoo-code" / "settings.json"


def rule_file(desired: Desired) -> Path:
    """Where Zoo Code 3.82 looks first for global rules."""
    return desired.paths.home / ".zoo" / "rules" / RULE_FILE_NAME


def own_rules_not_read(desired: Desired) -> list[str]:
    """The user's own entries in ~/.roo/rules/ that have no namesake in ~/.zoo/rules/ (3.82 reads
    only the latter once it exists)."""
    legacy, canonical = desired.paths.roo_rule_file.parent, rule_file(desired).parent
    try:
        names = sorted(entry.name for entry in islice(legacy.iterdir(), MAX_RULE_ENTRIES))
    except OSError:  # absent, or not a directory: nothing of the user's to miss
        return []
    return [name for name in names if name != RULE_FILE_NAME and not (canonical / name).exists()]


def _own_rules_note(desired: Desired) -> ActionRule:
    from workspace_agent.plan import ActionFact, ActionRule

    def observe() -> ActionFact:
        names = own_rules_not_read(desired)
        if not names:
            return ActionFact(True)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return ActionFact(
            True,
            message=f"Zoo Code 3.82 reads ~/.zoo/rules/, not ~/.roo/rules/: copy your own {shown} there "
            "for Zoo Code to follow them",
        )

    target = str(desired.paths.roo_rule_file.parent)
    return ActionRule("zoo.own-rules", target, observe, fix=None, title="your own rules Zoo Code 3.82 does not read")


def rules(desired: Desired, key: KeyResolution) -> list[Rule]:
    from workspace_agent.resources import generated_file, json_key

    found: list[Rule] = [
        generated_file("zoo.rules", rule_file(desired), desired.prompt, title="enforcement rule file (3.82+)"),
        roo_code.legacy_rule_file(desired),  # 3.80, and 3.82 without ~/.zoo/rules
        _own_rules_note(desired),
        json_key("zoo.auto-import-path", desired.paths.user_settings, SETTINGS_KEY, str(import_file(desired))),
    ]
    if key.key is not None:
        text = roo_code.import_text(desired, key.key)
        found.append(generated_file("zoo.import", import_file(desired), text, mode=0o600, secret=True, title="import file"))
    return found


def paths(desired: Desired) -> tuple[Path, ...]:
    return (rule_file(desired), desired.paths.roo_rule_file, desired.paths.user_settings, import_file(desired))


CLIENT = Client(
    name="zoo-code",
    title="Zoo Code",
    # `roo-code` too: the image ships Zoo Code in Roo Code's place, and a workspace that asked for
    # Roo Code must come up working with whichever of the two is installed.
    assistants=("both", "all", "roo-code", "zoo-code"),
    rules=rules,
    models=roo_code.models,
    paths=paths,
    settings_keys=(SETTINGS_KEY,),
)
