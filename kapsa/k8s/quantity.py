"""Resource quantities in the form the API server stores them, so a reconcile can compare.

The API server rewrites quantities canonically (`1000m` becomes `1`, `1024Mi` becomes `1Gi`,
`0.5` becomes `500m`), except that a decimal it already finds in canonical shape keeps the
user's spelling (`1.001` stays). Kapsa writes them the same way, so the Deployment it wants and
the one the server keeps are equal and an unchanged Project causes no write. A test holds this
to the real API server.
"""

from __future__ import annotations

import re
from fractions import Fraction

from kapsa.api.project import QUANTITY_PATTERN
from kapsa.errors import InvalidSpecError

_QUANTITY = re.compile(QUANTITY_PATTERN)
_BINARY = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
_DECIMAL = ["m", "", "k", "M", "G", "T", "P", "E"]


def canonical(text: str) -> str:
    """`text` as the API server would store it."""
    match = _QUANTITY.match(text)
    if match is None:
        raise InvalidSpecError(f"{text!r} is not a quantity (e.g. 250m, 0.5, 128Mi)")
    whole, suffix = match.group(1), match.group(3) or ""
    fraction = (match.group(2) or "").removeprefix(".")
    number = Fraction(f"{whole}.{fraction or 0}")
    if not suffix.endswith("i"):
        # apimachinery's ParseQuantity keeps the text of a decimal whose scale is a multiple of
        # three, no finer than milli, and whose digits neither start with 0 nor end in 000.
        scale = 3 * (_DECIMAL.index(suffix) - 1) - len(fraction)
        digits = whole + fraction
        if scale >= -3 and scale % 3 == 0 and not digits.endswith("000") and digits[0] != "0":
            return text
    if suffix.endswith("i"):
        value = number * Fraction(1024) ** _BINARY.index(suffix)
        if value.denominator == 1:
            return _largest(int(value), base=1024, suffixes=_BINARY)
    else:
        value = number * Fraction(1000) ** (_DECIMAL.index(suffix) - 1)
    milli = value * 1000
    # Finer than a milli-unit: the server rounds up.
    whole = milli.numerator // milli.denominator + (milli.denominator != 1)
    return _largest(whole, base=1000, suffixes=_DECIMAL)


def _largest(amount: int, *, base: int, suffixes: list[str]) -> str:
    """The largest suffix that keeps the number whole: 1048576 → 1Mi, 1500 milli → 1500m."""
    if amount == 0:
        return "0"
    index = 0
    while index + 1 < len(suffixes) and amount % base == 0:
        amount //= base
        index += 1
    return f"{amount}{suffixes[index]}"
