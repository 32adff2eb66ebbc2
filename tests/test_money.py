"""Dollar amounts: cents as usual, and fractions of a cent shown as what they are."""

from __future__ import annotations

import pytest

from workspace_agent.money import money


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "unknown"),
        (0.0, "$0.00"),
        (10.0, "$10.00"),
        (1234.5, "$1,234.50"),
        (0.01, "$0.01"),
        (0.0042, "$0.0042"),  # not "$0.00"
        (0.004999, "$0.0050"),
        (0.000042, "$0.000042"),  # one mock request's cost
        (0.0000001, "<$0.000001"),
        (0.0099, "$0.0099"),  # not rounded up to "$0.01"
    ],
)
def test_money(value: float | None, text: str) -> None:
    assert money(value) == text


def test_a_small_spend_against_a_small_budget_is_not_zero_of_zero() -> None:
    assert f"{money(0.00021)} of {money(0.0005)}" == "$0.00021 of $0.00050"
