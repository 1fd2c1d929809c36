"""Where a data set's resized images are kept between epochs: memory, a file per split, or nowhere.

``cache="auto"`` (the default) keeps the resized set in memory when it fits the memory budget (half of the
memory available when the dataset is made, less what other live caches of this process have claimed),
else in a file under the cache folder (``$RADTRANSFER_CACHE_DIR``, default ``~/.cache/radtransfer/images``)
when the disk has room, else reads the files again every epoch. The choice and its reason are logged
(logger ``radtransfer.data``) and kept on the dataset's stream (``stream_of(ds).cache``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger("radtransfer.data")
MEMORY_FRACTION = 0.5
DISK_MARGIN = 1 << 30       # leave 1 GiB free on the cache disk
CACHE_ENV = "RADTRANSFER_CACHE_DIR"
MODES = ("memory", "disk", "none")

_lock = threading.Lock()
_claims: dict[int, int] = {}  # id of a live stream's claim -> bytes


@dataclass(frozen=True)
class CacheChoice:
    """How a dataset is cached: ``mode`` is "memory", "disk" or "none"; ``path`` the file prefix on disk."""

    mode: str
    reason: str
    nbytes: int
    path: str | None = None


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "radtransfer" / "images").expanduser()


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def parse_bytes(value) -> int:
    """An int of bytes, or a string such as "8GiB", "500MB", "2g"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(i?b?)\s*", str(value).lower())
    if not match:
        raise ValueError(f"Expected a size in bytes (e.g. 8_000_000_000 or '8GiB'). Received: {value!r}")
    number, unit, binary = float(match.group(1)), match.group(2), match.group(3).startswith("i")
    power = "_kmgt".index(unit) if unit else 0
    return int(number * (1024 if binary or not unit else 1000) ** power)


def human(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return ""


def claimed_memory() -> int:
    with _lock:
        return sum(_claims.values())


def claim(owner, nbytes: int) -> None:
    """Counts ``nbytes`` of memory cache against the budget for as long as ``owner`` lives."""
    key = id(owner)
    with _lock:
        _claims[key] = nbytes
    weakref.finalize(owner, _release, key)


def _release(key) -> None:
    with _lock:
        _claims.pop(key, None)


def choose_cache(cache, nbytes: int, name: str, memory_budget=None, cache_dir=None) -> CacheChoice:
    """Decides how a dataset whose resized images take ``nbytes`` is cached.

    Args:
        cache: "auto", True / "memory", False / "none", or a file path prefix (a disk cache there).
        nbytes: the resized, uint8 set's size in bytes.
        name: the content-derived file name suffix (see ``pipeline.cache_path``).
        memory_budget: the most bytes an "auto" memory cache may take (default: half the available memory,
            less the other live caches' claims).
        cache_dir: the folder for "auto" disk caches (default ``default_cache_dir()``).
    """
    if cache is True or cache == "memory":
        return CacheChoice("memory", "cache=True: kept in memory", nbytes)
    if cache is False or cache is None or cache == "none":
        return CacheChoice("none", "cache=False: files are read again every epoch", nbytes)
    if cache != "auto":
        prefix = Path(str(cache)).expanduser()
        prefix.parent.mkdir(parents=True, exist_ok=True)
        return CacheChoice("disk", f"cache={str(cache)!r}: a file cache", nbytes, f"{prefix}_{name}")
    others = claimed_memory()
    if memory_budget is None:
        budget = int(MEMORY_FRACTION * available_memory()) - others
        stated = f"half the available memory, less {human(others)} claimed by other caches" if others else \
            "half the available memory"
    else:
        budget = parse_bytes(memory_budget) - others
        stated = f"memory_budget={memory_budget!r}" + (f" less {human(others)} claimed by other caches" if others else "")
    if nbytes <= budget:
        return CacheChoice("memory", f"{human(nbytes)} fits the memory budget of {human(max(budget, 0))} ({stated})",
                           nbytes)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return CacheChoice("none", f"{human(nbytes)} exceeds the memory budget of {human(max(budget, 0))} and the "
                           f"cache folder '{folder}' is not usable ({exc.strerror}): streaming from the files", nbytes)
    if nbytes + DISK_MARGIN <= free:
        return CacheChoice("disk", f"{human(nbytes)} exceeds the memory budget of {human(max(budget, 0))} ({stated}); "
                           f"cached on disk in '{folder}' ({human(free)} free)", nbytes, str(folder / name))
    return CacheChoice("none", f"{human(nbytes)} exceeds the memory budget of {human(max(budget, 0))} and the "
                       f"{human(free)} free in '{folder}': streaming from the files every epoch", nbytes)
