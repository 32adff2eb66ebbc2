"""Record (workspace_agent/record.py) behaves as typing.NamedTuple does for what the agent uses."""

from __future__ import annotations

import pickle
from typing import NamedTuple

import pytest

from workspace_agent.record import Record


class Point(Record):
    """A point."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = ()

    @property
    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)

    def moved(self, dx: int) -> Point:
        return self._replace(x=self.x + dx)


class TypingPoint(NamedTuple):
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


def test_fields_defaults_and_methods_match_typing_namedtuple() -> None:
    p = Point(3, tags=("a",))
    assert (p.x, p.y, p.tags) == (3, 0, ("a",)) and p.norm1 == 3 and p.moved(2).x == 5
    assert Point._fields == TypingPoint._fields and Point._field_defaults == TypingPoint._field_defaults
    assert p._asdict() == {"x": 3, "y": 0, "tags": ("a",)} and p == Point(3, 0, ("a",))
    assert repr(p) == "Point(x=3, y=0, tags=('a',))" and Point.__doc__ == "A point."
    assert Point.__qualname__ == "Point" and Point.__module__ == __name__
    assert Point.__annotations__ == {"x": "int", "y": "int", "tags": "tuple[str, ...]"}
    assert isinstance(p, tuple) and hash(p) == hash(Point(3, 0, ("a",)))


def test_records_are_immutable_and_pickle() -> None:
    p = Point(1, 2)
    with pytest.raises(AttributeError):
        p.x = 5  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(p)) == p


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="without a default must come before"):
        class Bad(Record):
            a: int = 1
            b: int  # type: ignore[misc]


def test_the_records_own_methods_cannot_be_replaced() -> None:
    with pytest.raises(AttributeError, match="_replace"):
        class Bad(Record):
            a: int

            def _replace(self, **kwargs: object) -> Bad:  # type: ignore[override]
                return self


def test_a_repr_of_the_class_body_is_kept() -> None:
    class Secret(Record):
        value: str

        def __repr__(self) -> str:
            return "Secret(<hidden>)"

    assert repr(Secret("sk-123456789")) == "Secret(<hidden>)"
