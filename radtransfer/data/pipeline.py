"""make_dataset: an ImageSet → a tf.data pipeline of (uint8 RGB images, one-hot labels).

Order: read → decode → resize → cache (uint8) → shuffle → batch → augment → prefetch. The cache holds
resized uint8 images, so every random operation comes after it and differs between epochs. Where the
cache lives (memory, disk, none) is chosen in ``cache.py``.
"""

from __future__ import annotations

import logging
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..models.backbones import get_backbone
from ..utils.choices import did_you_mean
from ..errors import BadImagesError, ImageReadError
from .augment import augment_batch, get_augment
from .cache import LOG, CacheChoice, choose_cache, claim, ensure_disk_cache
from .decode import check_files, decode_image_tf, to_rgb
from .dicom import check_frame, read_dicom
from .imageset import ImageSet
from .intensity import to_uint8

MAX_LISTED = 20
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3")


def _bad_list(bad) -> str:
    lines = [f"  {path}: {reason}" for path, reason in bad[:MAX_LISTED]]
    if len(bad) > MAX_LISTED:
        lines.append(f"  ... and {len(bad) - MAX_LISTED} more")
    return "\n".join(lines)


ON_BAD = ("raise", "skip")


def check_images(image_set: ImageSet, on_bad: str = "raise", frame="middle", part: str | None = None):
    """Checks every file cheaply (exists, readable, header decodes), before anything is trained.

    Args:
        on_bad: "raise" (one error listing the bad files) or "skip" (leave them out, with a warning).
        frame: the frame policy of multi-frame DICOM files (as ``make_dataset``'s).
        part: the part's name ("train", "test", ...) for messages.

    Returns:
        (the image set without the skipped files, [(path, reason)] of the skipped files).

    Raises:
        BadImagesError: a file is bad and on_bad="raise", or no file is left.
    """
    kept, bad, _, _ = _check(image_set, on_bad, frame, part)
    return kept, bad


def _check(image_set: ImageSet, on_bad: str, frame, part=None):
    if on_bad not in ON_BAD:
        raise ValueError(f"Expected on_bad='raise' or 'skip'. Received: on_bad={on_bad!r}")
    if image_set.paths is None:
        gray = all(np.ndim(im) == 2 or np.shape(im)[-1] in (1, 2) for im in image_set.images)
        return image_set, [], gray, None
    bad, all_gray, dicom = check_files(image_set.paths, frame=frame)
    if not bad:
        return image_set, [], all_gray, dicom
    where = f" of the {part} part" if part else ""
    if on_bad == "raise":
        raise BadImagesError(
            f"{len(bad)} of {len(image_set)} image files{where} cannot be read:\n{_bad_list(bad)}\n"
            "Fix or remove them, or skip them (on_bad='skip'; command line: --on-bad skip).",
            bad,
        )
    bad_paths = {p for p, _ in bad}
    keep = [i for i, p in enumerate(image_set.paths) if p not in bad_paths]
    warnings.warn(f"Skipping {len(bad)} unreadable image file(s){where}:\n{_bad_list(bad)}", stacklevel=4)
    if not keep:
        raise BadImagesError(f"No readable images are left{where} after skipping the bad files.", bad)
    return image_set.subset(keep), bad, all_gray, dicom[keep]


def validate_images(image_set: ImageSet, on_bad: str = "raise", frame="middle") -> tuple[ImageSet, bool, np.ndarray | None]:
    """Checks every file cheaply (exists, readable, header decodes) before any training.

    Args:
        on_bad: "raise" (one error listing the bad files) or "skip" (drop them with a warning).

    Returns:
        (the image set, without the bad files when skipping; whether every image is grayscale;
        which of its files are DICOM, or None for in-memory images).
    """
    kept, _, gray, dicom = _check(image_set, on_bad, frame)
    return kept, gray, dicom


def _check_size(image_size, backbone) -> tuple[int, int]:
    try:
        height, width = (int(image_size), int(image_size)) if np.isscalar(image_size) else map(int, image_size)
    except (TypeError, ValueError):
        raise ValueError(f"Expected image_size=(height, width). Received: image_size={image_size!r}") from None
    if backbone is not None:
        spec = get_backbone(backbone)
        if min(height, width) < spec.min_size:
            raise ValueError(
                f"image_size {(height, width)} is below {spec.display_name}'s minimum of "
                f"{spec.min_size}×{spec.min_size}. Received: image_size={image_size!r}"
            )
    elif min(height, width) < 1:
        raise ValueError(f"Expected a positive image_size. Received: image_size={image_size!r}")
    return height, width


def make_dataset(image_set: ImageSet, image_size=(256, 256), batch_size: int = 32, augment=None, shuffle: bool = True,
                 cache="auto", seed: int | None = None, interpolation: str = "bilinear", on_bad: str = "raise",
                 backbone: str | None = None, shuffle_buffer: int = 4096, dicom_window=None,
                 sixteen_bit: str = "range", drop_remainder: bool = False, antialias: bool = True,
                 frame="middle", memory_budget=None, cache_dir=None):
    """Builds the input pipeline for training or evaluation.

    Args:
        image_set: from ``data.from_directory``, ``from_csv``, ``from_tfds`` or ``from_volumes`` (or a split).
        image_size: (height, width) the images are resized to.
        batch_size: images per batch.
        augment: None, "radimagenet" (the reference's training augmentation), "radimagenet_ct"
            (without rotation and flip, as the CT tasks) or an ``Augment(...)``.
        shuffle: shuffle the images each epoch (use False for validation and test). Every batch is a
            uniform draw from the whole set whatever the order of the files (see docs/data.md).
        cache: "auto" (memory if the resized set fits ``memory_budget``, else a file in ``cache_dir``, else
            none; the choice is logged and kept in ``stream_of(ds).cache``), True (memory), False (read the
            files every epoch), or a file path prefix (on disk; the file is named by the images, their order
            and the decode settings, so different splits never share one). A disk cache that is not there yet
            is filled here, in one pass, under a private name, and published complete (see ``cache.py``): a
            process killed while filling it, or two processes filling it at once, never break a later run.
        seed: makes shuffling and augmentation reproducible (still different in every epoch).
        interpolation: resize method; "nearest" reproduces the reference loader.
        on_bad: "raise" or "skip" for unreadable files (checked before anything is decoded).
        backbone: if given, image_size is checked against its minimum input size.
        shuffle_buffer: the shuffle buffer over a disk cache (written in a random order); memory caches
            and uncached reads are shuffled completely.
        dicom_window: (center, width) for DICOM files, overriding the files' own VOI LUT and window.
        sixteen_bit: "range" (a 16-bit image's own min..max → 0..255) or "full" (0..65535 → 0..255).
        drop_remainder: drop the last, smaller batch.
        antialias: low-pass filter when shrinking (bilinear, bicubic, lanczos3, area); no effect when
            enlarging or with "nearest".
        frame: the frame of multi-frame DICOM files: "middle", "first", "last" or an index.
        memory_budget: bytes (or "8GiB") an "auto" cache may keep in memory.
        cache_dir: folder for "auto" disk caches.

    Returns:
        A ``tf.data.Dataset`` of (uint8 images (batch, H, W, 3), float32 one-hot labels (batch, classes)).
    """
    if not isinstance(image_set, ImageSet):
        raise TypeError(f"Expected an ImageSet (from radtransfer.data.from_...). Received: {type(image_set).__name__}")
    if len(image_set) == 0:
        raise ValueError("The image set is empty: there is nothing to build a dataset from.")
    settings = ReadSettings(_check_size(image_size, backbone), interpolation, bool(antialias), sixteen_bit,
                            None if dicom_window is None else tuple(float(v) for v in dicom_window), check_frame(frame))
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Expected a positive integer batch_size. Received: batch_size={batch_size!r}")
    params = get_augment(augment)
    image_set, gray, dicom = validate_images(image_set, on_bad, frame=settings.frame)
    num_classes = image_set.num_classes
    # Grayscale sets keep one channel through resize, cache and augmentation (a third of the work and
    # memory) and become three identical channels at the end.
    channels = 1 if gray else 3
    n = len(image_set)
    # Images are read (and written to a cache) in a fixed random order when shuffling, so that no part of
    # the cache is sorted by class whatever the file order; the order depends on the set's content only.
    digest = content_hash(image_set)  # once: the order, the cache name and the run fingerprint all use it
    order = np.arange(n)
    if shuffle:
        order = np.random.default_rng(int(digest, 16) % (2 ** 63)).permutation(n)
    load = _loader(image_set, order, settings, dicom, channels, num_classes)
    height, width = settings.image_size
    name = cache_name(image_set, settings, channels, shuffle, digest,
                      files_changed=cache not in (True, False, None, "memory", "none"))
    choice = choose_cache(cache, n * height * width * channels, name, memory_budget, cache_dir)
    # The "auto" choice is news; an explicit one (e.g. evaluate's single uncached pass) is only for debugging.
    LOG.log(logging.INFO if cache == "auto" else logging.DEBUG, "%d images at %dx%dx%d: cache %s (%s)", n, height,
            width, channels, choice.mode, choice.reason)
    stream = DataStream(load, n, batch_size, shuffle, min(n, shuffle_buffer), params, seed, channels,
                        drop_remainder, choice, settings,
                        paths=None if image_set.paths is None else image_set.paths[order], order=order)
    if choice.mode == "memory":
        claim(stream, choice.nbytes)
    stream.describe = lambda: {  # asked for only by a run's fingerprint
        "images": digest, "n": n, "batch_size": batch_size, "shuffle": shuffle,
        "augment": None if params is None else repr(params), "drop_remainder": drop_remainder,
        **settings.to_dict()}
    result = stream.dataset()
    result.radtransfer_stream = stream
    return result


@dataclass(frozen=True)
class ReadSettings:
    """How image files become model inputs: what a trained model must be given to see images as in training."""

    image_size: tuple
    interpolation: str = "bilinear"
    antialias: bool = True
    sixteen_bit: str = "range"
    dicom_window: tuple | None = None
    frame: object = "middle"

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"Unknown interpolation {self.interpolation!r}; expected one of {INTERPOLATIONS}."
                             f"{did_you_mean(str(self.interpolation), INTERPOLATIONS)}")
        if self.sixteen_bit not in ("range", "full"):
            raise ValueError(f"Expected sixteen_bit='range' or 'full'. Received: {self.sixteen_bit!r}")

    def to_dict(self) -> dict:
        return {"image_size": list(self.image_size), "interpolation": self.interpolation,
                "antialias": self.antialias, "sixteen_bit": self.sixteen_bit,
                "dicom_window": None if self.dicom_window is None else list(self.dicom_window), "frame": self.frame}

    @classmethod
    def from_dict(cls, values: dict) -> "ReadSettings":
        values = dict(values)
        values["image_size"] = tuple(values["image_size"])
        if values.get("dicom_window") is not None:
            values["dicom_window"] = tuple(values["dicom_window"])
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    def dataset_kwargs(self) -> dict:
        """The ``make_dataset`` arguments that read images this way."""
        return {"image_size": self.image_size, "interpolation": self.interpolation, "antialias": self.antialias,
                "sixteen_bit": self.sixteen_bit, "dicom_window": self.dicom_window, "frame": self.frame}


def resize_image(image, settings: ReadSettings):
    """A uint8 HxWxC tensor resized to ``settings.image_size`` (antialiased when shrinking, if asked)."""
    import tensorflow as tf

    antialias = settings.antialias and settings.interpolation != "nearest"
    resized = tf.image.resize(tf.cast(image, tf.float32), settings.image_size, method=settings.interpolation,
                              antialias=antialias)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def _loader(image_set: ImageSet, order, settings: ReadSettings, dicom, channels: int, num_classes: int):
    """index dataset → (resized uint8 image, one-hot label) dataset, reading images ``order[i]``.

    Files decode in the graph (DICOM through pydicom in a numpy_function); in-memory images (tfds,
    volumes) are handed over by reference and resized in the graph, in parallel, with no copy.
    """
    import tensorflow as tf

    labels = tf.constant(image_set.labels[order])

    if image_set.paths is None:
        images = [image_set.images[i] for i in order]

        def fetch(index):
            return _as_uint8(np.asarray(images[int(index)]))

        def read(index):
            image = tf.numpy_function(fetch, [index], tf.uint8, stateful=False)
            image.set_shape([None, None, None])
            image = image[..., :channels] if channels == 1 else to_rgb(image)
            image.set_shape([None, None, channels])
            return image
    else:
        paths = tf.constant(np.asarray(image_set.paths[order], dtype=str))
        is_dicom = tf.constant(dicom[order])

        def read_dicom_np(path):
            path = path.decode()
            try:
                return read_dicom(path, window=settings.dicom_window, frame=settings.frame)
            except Exception as exc:  # an empty image and the reason kept here: see readable_pipeline_errors
                _remember_failure(path, getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}")
                return np.zeros((0, 0, 3), dtype=np.uint8)

        def read_dicom_checked(path):
            image = tf.numpy_function(read_dicom_np, [path], tf.uint8, stateful=False)
            # A failed read stops the pipeline with an assertion naming the file (one log line from
            # TensorFlow, not the Python traceback a raising numpy_function prints).
            check = tf.debugging.Assert(tf.size(image) > 0, [tf.strings.join([_MARK, path, _MARK])])
            with tf.control_dependencies([check]):
                return tf.identity(image)[..., :channels]

        def read(index):
            path = paths[index]
            image = tf.cond(
                is_dicom[index],
                lambda: read_dicom_checked(path),
                lambda: decode_image_tf(tf.io.read_file(path), settings.sixteen_bit, channels),
            )
            image.set_shape([None, None, channels])
            return image

    def load(indices):
        return indices.map(
            lambda i: (resize_image(read(i), settings), tf.one_hot(labels[i], num_classes, dtype=tf.float32)),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return load


def cache_name(image_set: ImageSet, settings: ReadSettings, channels: int, permuted: bool, digest: str,
               files_changed: bool = True) -> str:
    """The name of a file cache holding one set of images, in one order, read one way.

    TensorFlow reuses any existing cache file of a prefix, whichever dataset asks; naming the file by what it
    holds (the files, labels, order and decode settings) means two splits, two folds or two datasets never
    read each other's images. With ``files_changed``, each file's size and modification time count too, so a
    file replaced at the same path is read again rather than served stale from a cache of an earlier run.
    """
    import hashlib
    import os

    hasher = hashlib.sha256(digest.encode())  # digest: content_hash(image_set)
    for part in (sorted(settings.to_dict().items()), channels, permuted):
        hasher.update(repr(part).encode())
    if files_changed and image_set.paths is not None:
        for path in image_set.paths:
            try:
                stat = os.stat(path)
                hasher.update(f"{stat.st_size}:{stat.st_mtime_ns};".encode())
            except OSError:
                hasher.update(b"-;")
    return hasher.hexdigest()[:16]


def content_hash(image_set: ImageSet) -> str:
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


@dataclass(eq=False)
class DataStream:
    """A data set's images, where they are cached, and how epochs are drawn from them.

    ``epoch(k, seed)`` gives epoch k's batches, shuffled and augmented from streams derived from
    (seed, k) alone: the same in a run resumed at epoch k as in one that never stopped. ``dataset()``
    is the plain form that ``make_dataset`` returns (reshuffled on every iteration).

    Shuffling: a memory cache is shuffled with a buffer as large as the set (the buffer holds references
    to the cached images, not copies); uncached reads permute the whole index list each epoch; a disk cache
    is written in a random order and shuffled with a ``buffer``-sized buffer on top.
    """

    load: object            # index dataset -> (image, one-hot label) dataset
    size: int
    batch_size: int
    shuffle: bool
    buffer: int
    params: object          # augmentation parameters, or None
    seed: int | None
    channels: int
    drop_remainder: bool
    cache: CacheChoice
    settings: ReadSettings
    paths: np.ndarray = None    # file paths in the stream's base order (None for in-memory images)
    describe: object = None     # () -> what the images and decode settings are (for run fingerprints)
    order: np.ndarray = None    # the base order: element i is image order[i] of the set

    @property
    def signature(self) -> dict | None:
        if self.describe is None:
            return None
        if not hasattr(self, "_signature"):
            self._signature = self.describe()
        return self._signature

    @property
    def augmenting(self) -> bool:
        return self.params is not None and not self.params.is_identity

    def _cached(self):
        if not hasattr(self, "_base"):
            import tensorflow as tf

            base = self.load(tf.data.Dataset.range(self.size))
            if self.cache.mode == "memory":
                base = base.cache()
            elif self.cache.mode == "disk":
                # Read only once complete: TensorFlow filling the cache at its final name during the first
                # epoch left a lockfile that failed every later run when the process was killed.
                ensure_disk_cache(self.cache, self._fill_disk_cache)
                base = base.cache(self.cache.path)
            self._base = base
        return self._base

    def _fill_disk_cache(self, prefix: str, beat) -> None:
        """Writes the whole set to a TensorFlow file cache at ``prefix`` (one pass, uncached reads)."""
        import tensorflow as tf

        filled = self.load(tf.data.Dataset.range(self.size)).cache(prefix)
        with readable_pipeline_errors(self):
            for _ in filled.map(lambda image, label: 0).batch(256).prefetch(1):
                beat()

    def _elements(self, shuffle_seed, reshuffle: bool):
        import tensorflow as tf

        if not self.shuffle:
            return self._cached()
        if self.cache.mode == "none":
            indices = tf.data.Dataset.range(self.size).shuffle(self.size, seed=shuffle_seed,
                                                               reshuffle_each_iteration=reshuffle)
            return self.load(indices)
        buffer = self.size if self.cache.mode == "memory" else self.buffer
        return self._cached().shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=reshuffle)

    def _finish(self, dataset, augment_seeds):
        import tensorflow as tf

        dataset = dataset.batch(self.batch_size, drop_remainder=self.drop_remainder)
        if self.augmenting:
            params = self.params
            dataset = tf.data.Dataset.zip((dataset, augment_seeds)).map(
                lambda batch, s: (_to_rgb_batch(augment_batch(batch[0], params, s)), batch[1]),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
        elif self.channels == 1:
            dataset = dataset.map(lambda images, labels: (_to_rgb_batch(images), labels),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def ordered(self):
        """The images once, in the base order (``order``), neither shuffled nor augmented: for evaluation."""
        import tensorflow as tf

        dataset = self._cached().batch(self.batch_size)
        if self.channels == 1:
            dataset = dataset.map(lambda images, labels: (_to_rgb_batch(images), labels),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def dataset(self):
        import tensorflow as tf

        seeds = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True).batch(2)
        return self._finish(self._elements(self.seed, True), seeds)

    def epoch(self, epoch: int, seed: int | None = None):
        """Epoch ``epoch``'s dataset; its randomness depends only on (seed, epoch).

        Args:
            epoch: the epoch's index (0-based).
            seed: the base seed (default: the stream's own; a random one if neither is set).
        """
        import tensorflow as tf

        from ..utils.seeding import derive_seed, fresh_seed

        base_seed = seed if seed is not None else (self.seed if self.seed is not None else fresh_seed())
        seeds = tf.data.Dataset.random(seed=derive_seed(base_seed, "augment", epoch)).batch(2)
        return self._finish(self._elements(derive_seed(base_seed, "shuffle", epoch), False), seeds)


def stream_of(dataset) -> DataStream | None:
    """The DataStream behind a dataset made by ``make_dataset`` (None for any other dataset)."""
    return getattr(dataset, "radtransfer_stream", None)


# -- errors from inside the pipeline -------------------------------------------------------------

_MARK = "<<radtransfer-unreadable>>"


_failures: dict = {}  # path -> why its pixels could not be read, filled from inside the pipeline
_failures_lock = threading.Lock()


def _remember_failure(path: str, reason: str) -> None:
    with _failures_lock:
        _failures[path] = reason


def _unmark(message: str):
    """The path and reason of a read that failed inside the pipeline, from TensorFlow's error message."""
    start = message.find(_MARK)
    if start < 0:
        return None
    end = message.find(_MARK, start + len(_MARK))
    path = message[start + len(_MARK):end]
    with _failures_lock:
        reason = _failures.get(path, "its pixels could not be read")
    return {"path": path, "reason": reason}


@contextmanager
def readable_pipeline_errors(*datasets):
    """Turns a TensorFlow error raised while reading images into one line that names the file.

    DICOM failures carry their file and reason out of the pipeline. A PNG/JPEG/BMP that fails inside
    TensorFlow's decoder is found by decoding the datasets' files with Pillow (only after a failure).
    Without TensorFlow imported (JAX or PyTorch on in-memory data) there is no pipeline to fail.
    """
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is None:
        yield
        return
    try:
        yield
    except tf.errors.OpError as exc:
        message = str(getattr(exc, "message", exc))
        marked = _unmark(message)
        if marked is not None:
            raise ImageReadError(f"Cannot read '{marked['path']}': {marked['reason']}") from None
        if not _is_decode_failure(exc, message):
            raise
        detail = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
        paths = []
        for dataset in datasets:
            stream = dataset if isinstance(dataset, DataStream) else stream_of(dataset)
            if stream is not None and stream.paths is not None:
                paths += list(stream.paths)
        culprit = find_undecodable(paths)
        if culprit is not None:
            raise ImageReadError(f"Cannot read '{culprit[0]}': {culprit[1]} (TensorFlow: {detail})") from None
        raise ImageReadError(f"An image failed to decode inside the input pipeline (TensorFlow: {detail}).") from None


_DECODE_WORDS = ("decode", "jpeg", "png", "bmp", "no such file", "permission denied", "corrupt", "premature end",
                 "truncated")


def _is_decode_failure(exc, message: str) -> bool:
    import tensorflow as tf

    kinds = (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.DataLossError, tf.errors.UnknownError,
             tf.errors.PermissionDeniedError)
    lower = message.lower()
    return isinstance(exc, kinds) and any(word in lower for word in _DECODE_WORDS)


def find_undecodable(paths, workers: int = 8):
    """(path, reason) of the first file (in the given order) that Pillow cannot fully decode, or None."""
    from concurrent.futures import ThreadPoolExecutor

    from .decode import is_dicom

    def full_decode(path):
        if is_dicom(path):
            return None
        try:
            from PIL import Image

            with Image.open(path) as image:
                image.load()
        except Exception as exc:  # PIL raises many types for broken data
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'does not decode'}"
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, reason in zip(paths, pool.map(full_decode, list(paths))):
            if reason is not None:
                return str(path), reason
    return None


def _to_rgb_batch(images):
    import tensorflow as tf

    if images.shape[-1] == 1:
        return tf.repeat(images, 3, axis=-1)
    return images


def _as_uint8(image: np.ndarray) -> np.ndarray:
    """An in-memory image as uint8 HxWxC (wider types scaled from their own range, as 16-bit PNGs are)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype != np.uint8:
        wide = image.dtype == np.uint16 or image.max() > 255 or image.min() < 0
        image = to_uint8(image, None if wide else (0, 255))
    return image
