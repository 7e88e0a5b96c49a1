"""Text templates of a spec (backgrounds, the persona meta-prompt): `{field}` only, so that a
template cannot make a huge text (`{name:>20000000}`) or reach into an object (`{name.__class__}`)."""

from __future__ import annotations

import string
from collections.abc import Iterable

__all__ = ["MAX_TEMPLATE", "check_template"]

MAX_TEMPLATE = 2_000  # characters of a template


def check_template(template: str, known: Iterable[str], *, what: str) -> None:
    """Raise `ValueError` unless every field of `template` is one of `known`, written plainly."""
    try:
        parts = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template)]
    except ValueError as e:  # an unmatched brace
        raise ValueError(f"{what} is not a valid template: {e}") from None
    known = set(known)
    if unknown := sorted({f for f, _, _ in parts if f is not None} - known):
        raise ValueError(f"{what} names unknown fields {unknown}; known: {sorted(known)}")
    if shaped := sorted(
        {f"{{{f}{'!' + c if c else ''}{':' + p if p else ''}}}" for f, p, c in parts if p or c}
    ):
        raise ValueError(f"{what} takes plain fields like {{name}}, not {', '.join(shaped)}")
