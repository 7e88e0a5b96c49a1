"""Numbers in a model's words, and numbers written so that they read back exactly.

`last_number` is how a reply is read wherever a number is asked for (a guess in a round, a
survey's number question): the last number in it that lies in range, which is what a rambling
answer settles on ("Between 0 and 10, I pick 7" is 7). A number may be written `7`, `-2.5`,
`.5`, `1e+06`, `1,000,000` or, with a decimal comma, `3,5`. A comma between digits is read by
one rule: followed by groups of exactly three digits it separates thousands (`1,000` is 1000,
`3,500` is 3500), otherwise it is a decimal comma (`3,5` and `3,25` are 3.5 and 3.25); digits
run together with more commas (`3,5,7`) are a list. `show` writes a number so that
`last_number` reads back the same value.
"""

from __future__ import annotations

import math
import re

__all__ = ["last_number", "numbers", "show"]

_EXPONENT = r"(?:[eE][+-]?\d+)?"
# A run of digits and commas, perhaps with a decimal part and an exponent; a minus sign only where
# no word or number runs into it ("0-10" is 0 and 10).
_RUN = re.compile(rf"(?<![\w.])(-?)(\d[\d,]*(?:\.\d*)?{_EXPONENT}|\.\d+{_EXPONENT})")
_THOUSANDS = re.compile(rf"\d{{1,3}}(?:,\d{{3}})+(?:\.\d*)?{_EXPONENT}")
_DECIMAL_COMMA = re.compile(rf"\d+,\d+{_EXPONENT}")


def numbers(text: str) -> list[float]:
    """The numbers in `text`, in order."""
    found = []
    for sign, run in _RUN.findall(text):
        run = run.rstrip(",.")  # "5, I think", "I pick 3,5."
        if _THOUSANDS.fullmatch(run):
            parts = [run.replace(",", "")]
        elif _DECIMAL_COMMA.fullmatch(run):
            parts = [run.replace(",", ".")]
        else:
            parts = [part for part in run.split(",") if part]
        values = [float(part) for part in parts]
        found += [-values[0], *values[1:]] if sign else values
    return found


def last_number(text: str, low: float, high: float) -> float | None:
    """The last number in `text` within [low, high], if any."""
    for value in reversed(numbers(text)):
        if low <= value <= high:
            return value
    return None


def show(value: float) -> str:
    """`value` as `last_number` reads it back exactly: a whole number in digits (1000000, not
    1e+06), any other as Python's shortest exact form."""
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))
