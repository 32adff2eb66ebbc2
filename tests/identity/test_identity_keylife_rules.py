"""Key lifecycle decisions as tables (issue 18): what Coder's answers mean, when a level change
rotates, how many revocations one reconcile pass may make. Pure functions, no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from key_provisioner.coder_status import judge
from key_provisioner.keys import is_upgrade, old_alias
from key_provisioner.reconcile import ReconcileSettings, brake_limit
from key_provisioner.rotation import level_change
from key_provisioner.store import Approval

WS = "3f1b8a2c-5d6e-4f70-8a9b-0c1d2e3f4a5b"
OTHER = "9d2c7b1a-0e4f-4a3b-8c5d-6e7f8a9b0c1d"
GONE = "Workspace %s was deleted, you can view this workspace by specifying '?deleted=true' and trying again."
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "body", "state"),
    [
        (410, {"message": GONE % f'"{WS}"'}, "gone"),
        (410, {"message": GONE % f'"{WS.upper()}"'}, "gone"),
        (410, {"message": "Workspace was deleted"}, "unknown"),  # not a word on which workspace
        (410, {"message": GONE % f'"{OTHER}"'}, "unknown"),
        (410, {"message": "Gone"}, "unknown"),
        (410, None, "unknown"),
        (200, {"id": WS, "latest_build": {"transition": "start"}}, "present"),
        (200, {"id": WS, "latest_build": {"transition": "stop"}}, "present"),
        (200, {"id": WS, "latest_build": {"transition": "delete", "status": "deleting"}}, "deleting"),
        (200, {"id": WS, "latest_build": {"transition": "delete", "status": "pending"}}, "deleting"),
        (200, {"id": WS, "latest_build": {"transition": "delete", "status": "canceled"}}, "present"),
        (200, {"id": WS, "latest_build": {"transition": "delete", "status": "canceling"}}, "present"),
        (200, {"id": WS, "latest_build": {"transition": "delete", "status": "failed"}}, "present"),
        (200, {"id": WS, "latest_build": {"transition": "delete"}}, "unknown"),
        (200, {"id": "other", "latest_build": {}}, "unknown"),
        (200, None, "unknown"),
        (404, {"message": "Resource not found or you do not have access"}, "unknown"),
        (400, {"message": "Invalid UUID"}, "unknown"),
        (401, {"message": "Invalid API key."}, "unavailable"),
        (403, None, "unavailable"),
        (500, {"message": "db down"}, "unavailable"),
        (502, None, "unavailable"),
        (429, None, "unavailable"),
    ],
)
def test_only_410_is_gone(status: int, body: object, state: str) -> None:
    assert judge(status, body, WS).state == state


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"id": WS, "latest_build": {"transition": "x" * 1_000_000}}),
        (200, {"id": WS, "latest_build": {"transition": "delete", "status": {"a": ["b" * 1_000_000]}}}),
        (200, {"id": WS, "latest_build": {"transition": "delete", "status": "\x1b[2J" + "s" * 10_000}}),
        (410, {"message": GONE % WS + "\n" * 5000 + "m" * 1_000_000}),
        (503, {"message": "\x1b]0;x\x07" * 100_000}),
    ],
)
def test_coders_words_are_kept_to_one_short_line(status: int, body: object) -> None:
    """They go into events, log lines and the delete hook's answer."""
    detail = judge(status, body, WS).detail
    assert len(detail) <= 300 and detail.isprintable(), detail[:400]


def approval(level: str, expires: datetime) -> Approval:
    return Approval(WS, level, "admin:x (carol)", "", NOW.isoformat(), expires.isoformat())


@pytest.mark.parametrize(
    ("kept", "requested", "approved", "change"),
    [
        ("standard", "standard", None, "none"),
        ("standard", "design-first", None, "raise"),
        ("unrestricted", "standard", None, "raise"),
        ("design-first", "standard", None, "lower-refused"),
        ("design-first", "standard", approval("standard", NOW + timedelta(days=1)), "lower-approved"),
        ("design-first", "standard", approval("unrestricted", NOW + timedelta(days=1)), "lower-refused"),
        ("design-first", "standard", approval("standard", NOW - timedelta(seconds=1)), "lower-refused"),
        ("standard", "unrestricted", approval("unrestricted", NOW + timedelta(hours=1)), "lower-approved"),
    ],
)
def test_level_change(kept: str, requested: str, approved: Approval | None, change: str) -> None:
    assert level_change(kept, requested, approved, NOW) == change


def test_upgrade_order_and_old_alias() -> None:
    assert is_upgrade("standard", "design-first") and not is_upgrade("design-first", "standard")
    assert not is_upgrade("standard", "standard")
    assert old_alias(WS, 2) == f"workspace-{WS}-g2"


@pytest.mark.parametrize(
    ("checked", "fraction", "always", "limit"),
    [(1, 0.1, 3, 3), (10, 0.1, 3, 3), (100, 0.1, 3, 10), (1000, 0.05, 3, 50), (10, 0.5, 0, 5), (0, 0.1, 0, 0)],
)
def test_brake_limit(checked: int, fraction: float, always: int, limit: int) -> None:
    assert brake_limit(checked, ReconcileSettings(max_fraction=fraction, max_always=always)) == limit


@pytest.mark.parametrize(
    ("blocked", "alias", "rotated_out"),
    [
        (True, f"workspace-{WS}-g2", True),  # renamed and blocked: a completed rotation
        (False, f"workspace-{WS}-g2", False),  # renamed only: a rotation cut short, redone later
        (True, f"workspace-{WS}", False),  # blocked under its own alias: an admin's block, refused
        (True, f"workspace-{WS}-g1", False),  # another generation's alias
        (True, None, False),
    ],
)
def test_rotated_out(blocked: bool, alias: str | None, rotated_out: bool) -> None:
    from key_provisioner.keys import KeyFacts

    assert KeyFacts("standard", None, blocked, alias).rotated_out(WS, 2) is rotated_out
