"""Progress bars (tqdm: rate and ETA) for every loop over images, files or batches that can take a while.

Bars go to stderr. A library call shows them on a terminal only; the command and the demo turn them on for
every run (``show(True)``), so nothing long is silent in a log either. Below ``MIN_ITEMS`` items no bar is drawn.
"""

from __future__ import annotations

import math
import sys

MIN_ITEMS = 64
_shown: bool | None = None  # None: on a terminal only


def format_seconds(seconds: float) -> str:
    """``1h05m`` or ``4m07s``; ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def show(enabled: bool | None = True) -> None:
    """Turns bars on for every loop (True), off (False), or back to "on a terminal only" (None)."""
    global _shown
    _shown = enabled


def progress(iterable, total: int | None = None, desc: str = "", unit: str = "image", min_items: int = MIN_ITEMS):
    """``iterable`` wrapped in a progress bar with rate and ETA when bars are shown and it is long enough."""
    if total is None:
        total = len(iterable) if hasattr(iterable, "__len__") else None
    enabled = _shown if _shown is not None else sys.stderr.isatty()
    if not enabled or (total is not None and total < min_items):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 15.0,
        leave=True,
    )
