"""Dollar amounts as a person reads them: cents for ordinary amounts, and enough digits for the
fractions of a cent that one small request costs (never a misleading `$0.00` or `$0.01`)."""

from __future__ import annotations

import math


def money(value: float | None) -> str:
    """`$1,234.50`; `$0.0042` under a cent (two significant digits); `unknown` for None."""
    if value is None or math.isnan(value):
        return "unknown"
    sign = "-" if value < 0 else ""
    amount = abs(value)
    if amount == 0 or amount >= 0.01:
        return f"{sign}${amount:,.2f}"
    # Two significant digits: 0.0042 -> 4 decimals, 0.000042 -> 6; below a millionth say so.
    if amount < 0.000001:
        return f"{sign}<$0.000001"
    decimals = -math.floor(math.log10(amount)) + 1
    return f"{sign}${amount:.{decimals}f}"
