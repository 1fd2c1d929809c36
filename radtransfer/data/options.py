"""Keyword options checked once: what a function takes by keyword beyond its declared parameters."""

from __future__ import annotations

from ..utils.choices import did_you_mean


def take_options(where: str, options: dict, defaults: dict, declared=()) -> dict:
    """``options`` over ``defaults``, refusing a keyword that is not one of them in one line.

    Args:
        where: the function's name, for the message (``"make_dataset"``).
        options: the keywords given.
        defaults: every accepted keyword and its default.
        declared: the function's declared parameters, listed in the message too.

    Raises:
        TypeError: a keyword not in ``defaults`` (naming it, the closest, and every valid keyword).
    """
    unknown = [name for name in options if name not in defaults]
    if unknown:
        valid = sorted({*declared, *defaults})
        raise TypeError(
            f"{where}() got an unexpected keyword argument {unknown[0]!r}.{did_you_mean(unknown[0], valid)} "
            f"Valid keywords: {', '.join(valid)}."
        )
    return {**defaults, **options}
