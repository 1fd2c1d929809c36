"""One way to check an option: the value, or an error naming the argument, the valid choices and the closest."""

from __future__ import annotations

import difflib


def did_you_mean(value, choices, n: int = 2) -> str:
    """Returns ' Did you mean "x"?' for the closest choices, or an empty string."""
    originals = {}
    for choice in choices:
        originals.setdefault(str(choice).lower(), str(choice))
    close = difflib.get_close_matches(str(value).lower(), list(originals), n=n, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(f'"{originals[c]}"' for c in close) + "?"


def check_choice(name: str, value, choices, *, fold_case: bool = False, what: str = ""):
    """Returns ``value`` if it is one of ``choices``, else raises a one-line ValueError naming the argument, the
    choices and the closest ones.

    Args:
        name: the argument's name, as the caller spells it (``"on_bad"``).
        value: what was given.
        choices: the valid values (strings, None, ...).
        fold_case: compare strings without case; the matching choice is returned.
        what: more accepted forms, said after the list (e.g. "or a frame index ≥ 0").

    Raises:
        ValueError: ``value`` is not a choice.
    """
    choices = tuple(choices)
    if value in choices:
        return value
    if fold_case and isinstance(value, str):
        for choice in choices:
            if isinstance(choice, str) and choice.lower() == value.lower():
                return choice
    listed = ", ".join(repr(c) for c in choices)
    hint = did_you_mean(value, [c for c in choices if isinstance(c, str)]) if isinstance(value, str) else ""
    raise ValueError(
        f"Expected {name} to be one of {listed}{' ' + what if what else ''}.{hint} Received: {name}={value!r}"
    )
