"""A data set's resized images as one (N, H, W, C) uint8 array: in memory, or a memory-mapped ``.npy`` file.

The backend-free path's cache (``sequence.ImageSequence``), built once before the first epoch. Where it lives
is decided by ``cache.choose_cache`` (the same ``cache="auto"`` rule as the tf.data path), and a file is filled
and published by ``cache.ensure_disk_cache`` (the same private name, owner file and rename-into-place as a
TensorFlow cache). A file cache at prefix ``P`` is two files: ``P.data-uint8.npy`` (a standard ``.npy`` array,
written through ``numpy.lib.format.open_memmap`` and flushed) and ``P.index`` (its shape, written after the
array and renamed into place last). A cache is complete exactly when ``P.index`` exists: a writer killed
mid-fill leaves only its private ``P.tmp-…`` files, which no reader opens and a later fill removes.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ...utils.progress import progress
from ..cache import CacheChoice, ensure_disk_cache

__all__ = ["ARRAY_SUFFIX", "FORMAT", "cached_images", "open_array_cache"]

ARRAY_SUFFIX = ".data-uint8.npy"
FORMAT = "radtransfer-uint8-npy-1"


def cached_images(count: int, image_shape, read, choice: CacheChoice, workers: int | None = None):
    """The images ``read(0) … read(count - 1)`` as one uint8 array, kept where ``choice`` says.

    Args:
        count: how many images.
        image_shape: (height, width, channels) of every image.
        read: ``read(i)`` returns image i as uint8 (height, width, channels).
        choice: from ``cache.choose_cache``: "memory" (an array in memory), "disk" (a memory-mapped file at
            ``choice.path``, filled once and reused) or "none" (nothing is built: returns None).
        workers: threads that read images while filling (default: up to 8).

    Returns:
        A (count, height, width, channels) uint8 array (read-only memory map for "disk"), or None.
    """
    shape = (int(count), *(int(v) for v in image_shape))
    if choice.mode == "none":
        return None
    if choice.mode == "memory":
        array = np.empty(shape, dtype=np.uint8)
        _fill(array, read, workers, lambda: None, "caching images in memory")
        return array
    if choice.mode != "disk":
        raise ValueError(f"Expected a cache mode of 'memory', 'disk' or 'none'. Received: {choice.mode!r}")

    def fill(prefix: str, beat) -> None:
        array = np.lib.format.open_memmap(prefix + ARRAY_SUFFIX, mode="w+", dtype=np.uint8, shape=shape)
        _fill(array, read, workers, beat, "filling the disk cache")
        array.flush()
        del array
        with open(prefix + ARRAY_SUFFIX, "rb+") as handle:
            os.fsync(handle.fileno())
        Path(prefix + ".index").write_text(json.dumps({"format": FORMAT, "shape": list(shape), "dtype": "uint8"}))

    ensure_disk_cache(choice, fill)
    return open_array_cache(choice.path, shape)


def open_array_cache(prefix: str, shape=None) -> np.ndarray:
    """The complete array cache at ``prefix``, memory-mapped read-only.

    Args:
        prefix: the cache's path without suffix (``choice.path``).
        shape: the shape it must have (checked against its index and its array), or None.

    Raises:
        ValueError: the files at ``prefix`` are not a complete cache of that shape (the message says what to delete).
    """
    fix = f"delete '{prefix}.index' and '{prefix}{ARRAY_SUFFIX}' and run again to rebuild it"
    try:
        index = json.loads(Path(prefix + ".index").read_text())
        array = np.load(prefix + ARRAY_SUFFIX, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise ValueError(f"The image cache '{prefix}' cannot be opened ({exc}): {fix}.") from None
    expected = tuple(index.get("shape", ())) if shape is None else tuple(shape)
    if index.get("format") != FORMAT or tuple(index.get("shape", ())) != expected or array.shape != expected:
        raise ValueError(
            f"The image cache '{prefix}' holds an array of shape {array.shape} where {expected} was expected: {fix}."
        )
    return array


def _fill(array: np.ndarray, read, workers, beat, desc: str) -> None:
    workers = workers or min(8, os.cpu_count() or 1)
    count = array.shape[0]
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        images = pool.map(read, range(count))
        for i, image in enumerate(progress(images, total=count, desc=desc, unit="image")):
            array[i] = image
            beat()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a failed read stops the fill without reading the rest
