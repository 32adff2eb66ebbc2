"""The on-disk report queue: order by sequence number, bounds, damaged files, atomic 0600 files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from workspace_agent.errors import AgentError
from workspace_agent.spool import Spool


def _items(spool: Spool) -> list[str]:
    return [spool.read(e)["id"] for e in spool.entries()]  # type: ignore[index]


def test_entries_come_back_in_the_order_they_were_queued(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for name in ("a", "b", "c"):
        spool.enqueue({"id": name}, "2025-01-01T00:00:00+00:00")
    assert _items(spool) == ["a", "b", "c"]
    assert [e.seq for e in spool.entries()] == [1, 2, 3]


def test_order_follows_the_sequence_not_the_wall_clock(tmp_path: Path) -> None:
    """A clock that jumps back (queued_at going backwards) cannot reorder the queue."""
    spool = Spool(tmp_path / "spool")
    spool.enqueue({"id": "first"}, "2030-06-01T12:00:00+00:00")
    spool.enqueue({"id": "second"}, "2001-01-01T00:00:00+00:00")  # clock went back 29 years
    spool.enqueue({"id": "third"}, "2015-01-01T00:00:00+00:00")
    assert _items(spool) == ["first", "second", "third"]


def test_sequence_keeps_growing_after_delivery_empties_the_queue(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    first, _ = spool.enqueue({"id": "a"}, "t")
    spool.remove(first)
    second, _ = spool.enqueue({"id": "b"}, "t")
    assert second.seq > first.seq


def test_a_lost_sequence_file_falls_back_to_the_files_themselves(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.enqueue({"id": "a"}, "t")
    spool.enqueue({"id": "b"}, "t")
    (tmp_path / "spool" / "next-seq").write_text("garbage")
    third, _ = spool.enqueue({"id": "c"}, "t")
    assert third.seq == 3
    assert _items(spool) == ["a", "b", "c"]


def test_the_oldest_are_dropped_first_when_too_many(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_files=3)
    notes: list[str] = []
    for n in range(5):
        notes += spool.enqueue({"id": f"r{n}"}, "t")[1]
    assert _items(spool) == ["r2", "r3", "r4"]
    assert len(notes) == 2 and all("dropped the 1 oldest" in n for n in notes)


def test_the_oldest_are_dropped_first_when_too_big(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=3000)
    for n in range(6):
        spool.enqueue({"id": f"r{n}", "pad": "x" * 900}, "t")
    count, size = spool.size()
    assert size <= 3000
    assert _items(spool) == [f"r{n}" for n in range(6 - count, 6)]
    assert count == 3


def test_the_newest_report_is_kept_even_if_it_alone_is_over_the_byte_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=100)
    spool.enqueue({"id": "old"}, "t")
    spool.enqueue({"id": "big", "pad": "x" * 500}, "t")
    assert _items(spool) == ["big"]


def test_a_damaged_file_is_moved_aside_and_the_others_stay(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for name in ("a", "b", "c"):
        spool.enqueue({"id": name}, "t")
    damaged = spool.entries()[1]
    damaged.path.write_text('{"seq": 2, "item": {"id": "b"')  # truncated by a crash or a full disk
    results: list[str] = []
    for entry in spool.entries():
        try:
            item = spool.read(entry)
        except AgentError as exc:
            results.append(f"error: {exc.message}")
            continue
        assert item is not None
        results.append(item["id"])
    assert results[0] == "a" and results[2] == "c"
    assert results[1].startswith("error: queued report 000000000002.json was not readable")
    assert damaged.path.with_name(damaged.path.name + ".corrupt").exists()
    assert [e.seq for e in spool.entries()] == [1, 3]


def test_a_file_whose_sequence_does_not_match_its_name_is_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    entry, _ = spool.enqueue({"id": "a"}, "t")
    entry.path.write_text(json.dumps({"seq": 99, "item": {"id": "a"}}))
    with pytest.raises(AgentError):
        spool.read(entry)
    assert spool.entries() == []


def test_only_queue_files_count(tmp_path: Path) -> None:
    """Temp files of an interrupted atomic write, set-aside files and the sequence file are not reports."""
    spool = Spool(tmp_path / "spool")
    spool.enqueue({"id": "a"}, "t")
    directory = tmp_path / "spool"
    (directory / ".000000000009.json.x1.tmp").write_text("{}")
    (directory / "000000000007.json.corrupt").write_text("{}")
    (directory / "notes.txt").write_text("hi")
    (directory / "000000000008.json").mkdir()
    assert [e.seq for e in spool.entries()] == [1]


def test_files_are_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    entry, _ = spool.enqueue({"id": "a"}, "t")
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "spool" / "next-seq").stat().st_mode) == 0o600


def test_a_missing_directory_is_an_empty_queue(tmp_path: Path) -> None:
    assert Spool(tmp_path / "nothing-here").entries() == []
    assert Spool(tmp_path / "nothing-here").size() == (0, 0)


# -- damage of every kind: the damaged report is set aside, every other one still goes out in order --


DAMAGE = {
    "zero bytes": lambda path: path.write_bytes(b""),
    "not UTF-8": lambda path: path.write_bytes(b'{"seq": 2, "item": {"id": "\xff"}}'),
    "item not an object": lambda path: path.write_text('{"seq": 2, "item": ["b"]}'),
    "JSON null": lambda path: path.write_text("null"),
    "bigger than any report": lambda path: path.write_text('{"seq": 2, "item": {"pad": "' + "x" * (9 * 1024 * 1024) + '"}}'),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_each_kind_of_damage_is_set_aside_and_the_rest_keep_their_order(tmp_path: Path, damage: str) -> None:
    spool = Spool(tmp_path / "spool")
    for name in ("a", "b", "c", "d"):
        spool.enqueue({"id": name}, "t")
    damaged = spool.entries()[1]
    DAMAGE[damage](damaged.path)
    delivered, problems = [], []
    for entry in spool.entries():
        try:
            item = spool.read(entry)
        except AgentError as exc:
            problems.append(exc.message)
            continue
        assert item is not None
        delivered.append(item["id"])
        spool.remove(entry)
    assert delivered == ["a", "c", "d"]
    assert len(problems) == 1 and problems[0].startswith("queued report 000000000002.json")
    assert damaged.path.with_name(damaged.path.name + ".corrupt").exists()
    later, _ = spool.enqueue({"id": "e"}, "t")
    assert later.seq == 5 and _items(spool) == ["e"]


@pytest.mark.parametrize("stored", ["99999999999999", "-7", "0", "", "12abc"])
def test_a_damaged_sequence_file_never_hides_a_new_report(tmp_path: Path, stored: str) -> None:
    """A next-seq too big for the 12-digit names would name a file nobody reads: the report lost."""
    spool = Spool(tmp_path / "spool")
    spool.enqueue({"id": "a"}, "t")
    spool.enqueue({"id": "b"}, "t")
    (tmp_path / "spool" / "next-seq").write_text(stored)
    spool.enqueue({"id": "c"}, "t")
    assert _items(spool) == ["a", "b", "c"]


def test_a_sequence_file_that_is_a_directory_does_not_stop_queueing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.enqueue({"id": "a"}, "t")
    seq = tmp_path / "spool" / "next-seq"
    seq.unlink()
    seq.mkdir()
    (seq / "x").write_text("in the way")
    spool.enqueue({"id": "b"}, "t")
    spool.enqueue({"id": "c"}, "t")
    assert _items(spool) == ["a", "b", "c"]
