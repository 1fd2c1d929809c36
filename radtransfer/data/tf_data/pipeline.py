"""make_dataset: an ImageSet → a tf.data pipeline of (uint8 RGB images, one-hot labels).

Order: read → decode → resize → cache (uint8) → shuffle → batch → augment → prefetch. The cache holds
resized uint8 images, so every random operation comes after it and differs between epochs. Where the
cache lives (memory, disk, none) is chosen in ``cache.py``.
"""

from __future__ import annotations

import logging

import numpy as np

from ..augment import get_augment
from ..cache import LOG, cache_name, choose_cache, claim, content_hash, read_order
from ..decode import READ_OPTIONS, ReadSettings, read_options
from ..dicom import read_dicom
from ..failures import _MARK, _remember_failure, validate_images
from ..imageset import ImageSet
from ..intensity import as_uint8
from .decode import decode_image_tf, resize_image, to_rgb
from .stream import DataStream

__all__ = ["make_dataset"]

# make_dataset's keywords beyond its declared parameters: how files are read (each a ReadSettings field), and how
# the batches are made.
OPTIONS = {
    **READ_OPTIONS,
    "on_bad": "raise",
    "backbone": None,
    "shuffle_buffer": 4096,
    "drop_remainder": False,
    "memory_budget": None,
    "cache_dir": None,
}
DECLARED = ("image_set", "image_size", "batch_size", "augment", "shuffle", "cache", "seed", "settings")


def make_dataset(
    image_set: ImageSet,
    image_size=None,
    batch_size: int = 32,
    augment=None,
    shuffle: bool = True,
    cache="auto",
    seed: int | None = None,
    *,
    settings: ReadSettings | None = None,
    **options,
):
    """Builds the input pipeline for training or evaluation.

    Args:
        image_set: from ``data.from_directory``, ``from_csv``, ``from_tfds`` or ``from_volumes`` (or a split).
        image_size: (height, width) the images are resized to (default: ``settings``', else 256×256).
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
        settings: how files are read, as one ``ReadSettings`` (e.g. ``ReadSettings.of_model(model)``); the read
            keywords below, when given, replace its fields.
        **options: the read keywords (``ReadSettings``' fields): ``interpolation`` (resize method; "nearest"
            reproduces the reference loader), ``antialias`` (low-pass filter when shrinking), ``sixteen_bit``
            ("range": a 16-bit image's own min..max → 0..255; "full": 0..65535 → 0..255), ``dicom_window``
            ((center, width) for DICOM files, overriding the files' own VOI LUT and window), ``frame`` (of
            multi-frame DICOM files: "middle", "first", "last" or an index); and ``on_bad`` ("raise" or "skip"
            for unreadable files, checked before anything is decoded), ``backbone`` (image_size is checked
            against its minimum input size), ``shuffle_buffer`` (the shuffle buffer over a disk cache, written in
            a random order; memory caches and uncached reads are shuffled completely), ``drop_remainder`` (drop
            the last, smaller batch), ``memory_budget`` (bytes, or "8GiB", an "auto" cache may keep in memory),
            ``cache_dir`` (folder for "auto" disk caches). Any other keyword is refused.

    Returns:
        A ``tf.data.Dataset`` of (uint8 images (batch, H, W, 3), float32 one-hot labels (batch, classes)); for a
        multi-label set, multi-hot label rows (``ImageSet.targets``).
    """
    if not isinstance(image_set, ImageSet):
        raise TypeError(f"Expected an ImageSet (from radtransfer.data.from_...). Received: {type(image_set).__name__}")
    if len(image_set) == 0:
        raise ValueError("The image set is empty: there is nothing to build a dataset from.")
    settings, options = read_options("make_dataset", settings, image_size, options, OPTIONS, DECLARED)
    on_bad, shuffle_buffer = options["on_bad"], options["shuffle_buffer"]
    drop_remainder, memory_budget, cache_dir = options["drop_remainder"], options["memory_budget"], options["cache_dir"]
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Expected a positive integer batch_size. Received: batch_size={batch_size!r}")
    params = get_augment(augment)
    image_set, gray, dicom = validate_images(image_set, on_bad, frame=settings.frame)
    # Grayscale sets keep one channel through resize, cache and augmentation (a third of the work and
    # memory) and become three identical channels at the end.
    channels = 1 if gray else 3
    n = len(image_set)
    digest = content_hash(image_set)  # once: the cache name and the run fingerprint use it
    order = read_order(image_set) if shuffle else np.arange(n)
    load = _loader(image_set, order, settings, dicom, channels)
    height, width = settings.image_size
    name = cache_name(
        image_set, settings, channels, shuffle, digest, files_changed=cache not in (True, False, None, "memory", "none")
    )
    choice = choose_cache(cache, n * height * width * channels, name, memory_budget, cache_dir)
    # The "auto" choice is news; an explicit one (e.g. evaluate's single uncached pass) is only for debugging.
    LOG.log(
        logging.INFO if cache == "auto" else logging.DEBUG,
        "%d images at %dx%dx%d: cache %s (%s)",
        n,
        height,
        width,
        channels,
        choice.mode,
        choice.reason,
    )
    stream = DataStream(
        load,
        n,
        batch_size,
        shuffle,
        min(n, shuffle_buffer),
        params,
        seed,
        channels,
        drop_remainder,
        choice,
        settings,
        paths=None if image_set.paths is None else image_set.paths[order],
        order=order,
    )
    if choice.mode == "memory":
        claim(stream, choice.nbytes)
    stream.describe = lambda: {  # asked for only by a run's fingerprint
        "images": digest,
        "n": n,
        "batch_size": batch_size,
        "shuffle": shuffle,
        "augment": None if params is None else repr(params),
        "drop_remainder": drop_remainder,
        **settings.to_dict(),
    }
    result = stream.dataset()
    result.radtransfer_stream = stream
    return result


def _loader(image_set: ImageSet, order, settings: ReadSettings, dicom, channels: int):
    """index dataset → (resized uint8 image, one-hot or multi-hot label) dataset, reading images ``order[i]``.

    Files decode in the graph (DICOM through pydicom in a numpy_function); in-memory images (tfds,
    volumes) are handed over by reference and resized in the graph, in parallel, with no copy.
    """
    import tensorflow as tf

    # One class per image: the labels as integers, one-hot per element (an (n, classes) table would be embedded in
    # the graph: 0.9 GB for RadImageNet's 1.35M images of 165 classes); multi-label rows are the table itself.
    multi_label = image_set.multi_label
    num_classes = image_set.num_classes
    targets = tf.constant(image_set.targets()[order] if multi_label else image_set.labels[order])

    def target(i):
        return targets[i] if multi_label else tf.one_hot(targets[i], num_classes, dtype=tf.float32)

    if image_set.paths is None:
        images = [image_set.images[i] for i in order]

        def fetch(index):
            return as_uint8(np.asarray(images[int(index)]))

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
                lambda: decode_image_tf(tf.io.read_file(path), settings.sixteen_bit, channels, path),
            )
            image.set_shape([None, None, channels])
            return image

    def load(indices):
        return indices.map(
            lambda i: (resize_image(read(i), settings), target(i)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    return load
