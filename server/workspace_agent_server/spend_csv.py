"""CSV of the spend views, safe to open in a spreadsheet.

Names come from key metadata and workspaces (user-chosen text): a cell that starts with `=`,
`+`, `-`, `@`, a tab or a carriage return would be run as a formula by Excel or LibreOffice
(CSV injection), so such text cells get a leading `'` (OWASP's advice). Numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value).replace("\x00", "")
    return "'" + text if text.startswith(_FORMULA_START) else text


def render(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue().encode("utf-8")


GROUP_COLUMNS = (
    "key",
    "label",
    "spend",
    "requests",
    "keys",
    "workspaces",
    "share",
    "drifted_workspaces",
)
KEY_COLUMNS = (
    "key_alias",
    "key_name",
    "workspace_id",
    "workspace_name",
    "owner",
    "template",
    "level",
    "spend",
    "max_budget",
    "percent",
    "budget_duration",
    "budget_reset_at",
    "created_at",
    "last_spend_at",
    "last_active",
    "idle_days",
    "drifted",
)


def of_dicts(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> bytes:
    return render(columns, ([r.get(c) for c in columns] for r in rows))
