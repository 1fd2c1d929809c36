"""Where a data set's resized images are kept between epochs: memory, a file per split, or nowhere.

``cache="auto"`` (the default) keeps the resized set in memory when it fits the memory budget (half of the
memory available when the dataset is made, less what other live caches of this process have claimed),
else in a file under the cache folder (``$RADTRANSFER_CACHE_DIR``, default ``~/.cache/radtransfer/images``)
when the disk has room, else reads the files again every epoch. The choice and its reason are logged
(logger ``radtransfer.data``) and kept on the dataset's stream (``stream_of(ds).cache``).

A disk cache is filled in full before training, under a name private to the filling process
(``<name>.tmp-<host>-<pid>-<random>``), and published by renaming its files into place, the ``.index`` file
last: a cache is complete exactly when its ``.index`` exists, and only a complete cache is read. (TensorFlow
fills a cache at the name it is given during the first epoch: a process killed meanwhile leaves a lockfile
there on which every later run fails with ``AlreadyExistsError``, and two processes filling one name at once
both fail.) A killed writer leaves only its private files, removed by a later fill once the writer's process
is gone (or its files have not changed for ``STALE_AFTER_S``); two writers both fill, and the second to
finish finds the cache published and drops its own copy.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils.processes import process_alive, start_ticks, this_machine

try:
    import fcntl
except ImportError:  # not POSIX: publication relies on the files of two complete caches being equal
    fcntl = None

LOG = logging.getLogger("radtransfer.data")
MEMORY_FRACTION = 0.5
DISK_MARGIN = 1 << 30  # leave 1 GiB free on the cache disk
CACHE_ENV = "RADTRANSFER_CACHE_DIR"
MODES = ("memory", "disk", "none")
STALE_AFTER_S = 2 * 3600  # a private fill whose files have not changed for this long is dead (other machines)
HEARTBEAT_S = 60.0  # how often a fill touches its owner file

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
        stated = (
            f"half the available memory, less {human(others)} claimed by other caches"
            if others
            else "half the available memory"
        )
    else:
        budget = parse_bytes(memory_budget) - others
        stated = f"memory_budget={memory_budget!r}" + (
            f" less {human(others)} claimed by other caches" if others else ""
        )
    if nbytes <= budget:
        return CacheChoice(
            "memory", f"{human(nbytes)} fits the memory budget of {human(max(budget, 0))} ({stated})", nbytes
        )
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return CacheChoice(
            "none",
            f"{human(nbytes)} exceeds the memory budget of {human(max(budget, 0))} and the "
            f"cache folder '{folder}' is not usable ({exc.strerror}): streaming from the files",
            nbytes,
        )
    if nbytes + DISK_MARGIN <= free:
        return CacheChoice(
            "disk",
            f"{human(nbytes)} exceeds the memory budget of {human(max(budget, 0))} ({stated}); "
            f"cached on disk in '{folder}' ({human(free)} free)",
            nbytes,
            str(folder / name),
        )
    return CacheChoice(
        "none",
        f"{human(nbytes)} exceeds the memory budget of {human(max(budget, 0))} and the "
        f"{human(free)} free in '{folder}': streaming from the files every epoch",
        nbytes,
    )


# -- disk caches: filled under a private name, published complete -------------------------------------------------


def is_complete(prefix) -> bool:
    """Whether the file cache at ``prefix`` (TensorFlow's, or ``array_cache``'s) is complete: its ``.index`` is
    written, or renamed, last."""
    return os.path.exists(f"{prefix}.index")


def ensure_disk_cache(choice: CacheChoice, fill) -> bool:
    """Makes sure a complete cache is at ``choice.path``: if none is, fills one privately and publishes it.

    Args:
        choice: a disk ``CacheChoice``.
        fill: ``fill(prefix, beat)`` writes the whole cache at ``prefix`` (one full pass over a dataset cached
            there, or ``array_cache``'s ``.npy`` array), ``prefix.index`` last, calling ``beat()`` now and then.

    Returns:
        Whether this call filled a cache (False when a complete one was there already).
    """
    path = choice.path
    if is_complete(path):
        LOG.debug("reading the disk cache '%s'", path)
        return False
    remove_stale(path)
    pid = os.getpid()
    private = f"{path}.tmp-{socket.gethostname().split('.')[0]}-{pid}-{uuid.uuid4().hex[:8]}"
    owner = Path(f"{private}.owner")
    owner.write_text(json.dumps({"machine": _machine(), "pid": pid, "start_ticks": start_ticks(pid)}))
    LOG.info("filling the disk cache '%s' (%s) before the first epoch", path, human(choice.nbytes))
    start = last = time.monotonic()

    def beat():
        nonlocal last
        if time.monotonic() - last >= HEARTBEAT_S:
            last = time.monotonic()
            try:
                owner.touch()
            except OSError:
                pass

    try:
        fill(private, beat)
        if not is_complete(private):
            raise RuntimeError(f"The disk cache '{private}' was not complete (no .index) after a full pass.")
        published = _publish(private, path)
    finally:
        _remove(_files_of(private))
    LOG.info(
        "filled the disk cache '%s' in %.0f s%s",
        path,
        time.monotonic() - start,
        "" if published else " (another process published it first; this copy was dropped)",
    )
    return True


def remove_stale(path: str) -> None:
    """Removes what dead writers left at ``path``: their private fills, and TensorFlow's lockfile and partial
    files at ``path`` itself (from a fill there by an earlier version) once unchanged for ``STALE_AFTER_S``.

    A private fill is dead when its owner (named in its ``.owner`` file) was a process of this machine that is
    gone, or, for another machine's, when none of its files has changed for ``STALE_AFTER_S``.
    """
    for owner in glob.glob(f"{glob.escape(path)}.tmp-*.owner"):
        prefix = owner[: -len(".owner")]
        files = _files_of(prefix)
        if _abandoned(owner, files):
            LOG.info("removing the unfinished disk cache '%s' (its writer is gone)", prefix)
            _remove(files)
    pattern = re.compile(re.escape(path) + r"_\d+\.(lockfile|index|data-.*)")
    leftovers = [name for name in glob.glob(f"{glob.escape(path)}_*") if pattern.fullmatch(name)]
    if leftovers and _age(leftovers) > STALE_AFTER_S:
        LOG.info("removing %d files of an unfinished TensorFlow cache at '%s'", len(leftovers), path)
        _remove(leftovers)


def _machine() -> str:
    """This machine and pid namespace: where a pid names one process (containers share a boot id, not pids)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{this_machine()}/{namespace}"


def _abandoned(owner: str, files: list) -> bool:
    try:
        info = json.loads(Path(owner).read_text())
    except (OSError, ValueError):
        info = {}
    if info.get("machine") == _machine() and isinstance(info.get("pid"), int):
        return not process_alive(info["pid"], info.get("start_ticks"))
    return _age(files) > STALE_AFTER_S


def _age(files) -> float:
    """Seconds since the newest of ``files`` changed (0 when none is left)."""
    times = []
    for name in files:
        try:
            times.append(os.stat(name).st_mtime)
        except OSError:
            pass
    return time.time() - max(times) if times else 0.0


def _files_of(prefix: str) -> list:
    """The files of the cache at ``prefix``: TensorFlow's (``.index``, ``.data-*``, ``_0.lockfile``, …) or
    ``array_cache``'s (``.index``, ``.data-uint8.npy``), and the ``.owner`` file."""
    return glob.glob(f"{glob.escape(prefix)}[._]*")


def _remove(files) -> None:
    for name in sorted(files, key=lambda name: name.endswith(".owner")):  # the owner last: it marks the rest
        try:
            os.remove(name)
        except OSError:
            pass


def _publish(private: str, path: str) -> bool:
    """Renames the complete cache at ``private`` to ``path``, the ``.index`` last; False if one was there."""
    with _publish_lock(path):
        if is_complete(path):
            return False
        data = {name: path + name[len(private) :] for name in glob.glob(f"{glob.escape(private)}.data-*")}
        _remove(set(glob.glob(f"{glob.escape(path)}.data-*")) - set(data.values()))  # of a publication cut short
        for source, target in sorted(data.items()):
            os.replace(source, target)
        os.replace(f"{private}.index", f"{path}.index")
    return True


@contextmanager
def _publish_lock(path: str):
    """Holds an exclusive lock on ``<path>.lock`` where the filesystem supports it (the kernel releases it when
    the process dies). Without one, two publications of one cache may interleave: both are complete copies of
    the same images, so the result is still whole."""
    if fcntl is None:
        yield
        return
    with open(f"{path}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # no locks on this filesystem (Lustre mounted -o noflock)
            pass
        yield


# -- a cache's name: what images, in what order, read how ----------------------------------------------------


# Bumped when decoding gives other pixels for the same file and settings, so no cache of the old pixels is read
# (2: JPEGs decoded with the accurate integer IDCT, as Pillow does).
DECODER_VERSION = 2
READ_ORDER = "labels"  # what the fixed order of a shuffled set is drawn from (read_order); in the cache's name


def read_order(image_set) -> np.ndarray:
    """The fixed order a shuffled set is read (and cached) in, before each epoch's own shuffle: a permutation drawn
    from the set's size and labels only, so no part of the cache is sorted by class whatever the file order, and
    the same images in the same order train the same way whether they are PNG or DICOM files, under other names,
    or held in memory."""
    import hashlib

    digest = hashlib.sha256(repr(image_set.labels.tolist()).encode()).hexdigest()[:16]
    return np.random.default_rng(int(digest, 16)).permutation(len(image_set))


def cache_name(image_set, settings, channels: int, permuted: bool, digest: str, files_changed: bool = True) -> str:
    """The name of a file cache holding one set of images, in one order, read one way.

    TensorFlow reuses any existing cache file of a prefix, whichever dataset asks; naming the file by what it
    holds (the files, labels, order and decode settings) means two splits, two folds or two datasets never
    read each other's images. With ``files_changed``, each file's size and modification time count too, so a
    file replaced at the same path is read again rather than served stale from a cache of an earlier run.
    """
    import hashlib
    import os

    hasher = hashlib.sha256(digest.encode())  # digest: content_hash(image_set)
    for part in (sorted(settings.to_dict().items()), channels, permuted and READ_ORDER, DECODER_VERSION):
        hasher.update(repr(part).encode())
    if files_changed and image_set.paths is not None:
        for path in image_set.paths:
            try:
                stat = os.stat(path)
                hasher.update(f"{stat.st_size}:{stat.st_mtime_ns};".encode())
            except OSError:
                hasher.update(b"-;")
    return hasher.hexdigest()[:16]


def content_hash(image_set) -> str:
    """A hash of which images (paths, or in-memory pixels) and labels a set holds, in order."""
    import hashlib

    digest = hashlib.sha256(repr(image_set.labels.tolist()).encode())
    if image_set.paths is not None:
        digest.update("\n".join(map(str, image_set.paths)).encode())
    else:
        for image in image_set.images:
            array = np.ascontiguousarray(image)
            digest.update(repr(array.shape).encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:16]
