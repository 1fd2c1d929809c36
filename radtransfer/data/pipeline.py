"""make_dataset: an ImageSet → a tf.data pipeline of (uint8 RGB images, one-hot labels).

Order: read → decode → resize → cache (uint8) → shuffle → batch → augment → prefetch. The cache holds
resized uint8 images, so every random operation comes after it and differs between epochs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..backbones import did_you_mean, get_backbone
from ..errors import RadtransferError
from .augment import augment_batch, get_augment
from .decode import _to_uint8_range, check_files, decode_image_tf, read_dicom
from .imageset import ImageSet

MAX_LISTED = 20
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3")


class BadImagesError(RadtransferError, ValueError):
    """Some image files are missing or unreadable (listed in the message and in ``.bad``)."""

    def __init__(self, message, bad):
        super().__init__(message)
        self.bad = bad


def _bad_list(bad) -> str:
    lines = [f"  {path}: {reason}" for path, reason in bad[:MAX_LISTED]]
    if len(bad) > MAX_LISTED:
        lines.append(f"  ... and {len(bad) - MAX_LISTED} more")
    return "\n".join(lines)


def validate_images(image_set: ImageSet, on_bad: str = "raise") -> tuple[ImageSet, bool, np.ndarray | None]:
    """Checks every file cheaply (exists, readable, header decodes) before any training.

    Args:
        on_bad: "raise" (one error listing the bad files) or "skip" (drop them with a warning).

    Returns:
        (the image set, without the bad files when skipping; whether every image is grayscale;
        which of its files are DICOM, or None for in-memory images).
    """
    if on_bad not in ("raise", "skip"):
        raise ValueError(f"Expected on_bad='raise' or 'skip'. Received: on_bad={on_bad!r}")
    if image_set.paths is None:
        gray = all(np.ndim(im) == 2 or np.shape(im)[-1] in (1, 2) for im in image_set.images)
        return image_set, gray, None
    bad, all_gray, dicom = check_files(image_set.paths)
    if not bad:
        return image_set, all_gray, dicom
    if on_bad == "raise":
        raise BadImagesError(
            f"{len(bad)} of {len(image_set)} image files cannot be read:\n{_bad_list(bad)}\n"
            "Fix or remove them, or pass on_bad='skip' to leave them out.",
            bad,
        )
    bad_paths = {p for p, _ in bad}
    keep = [i for i, p in enumerate(image_set.paths) if p not in bad_paths]
    warnings.warn(f"Skipping {len(bad)} unreadable image file(s):\n{_bad_list(bad)}", stacklevel=3)
    if not keep:
        raise BadImagesError("No readable images are left after skipping the bad files.", bad)
    return image_set.subset(keep), all_gray, dicom[keep]


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
                 cache=True, seed: int | None = None, interpolation: str = "bilinear", on_bad: str = "raise",
                 backbone: str | None = None, shuffle_buffer: int = 4096, dicom_window=None,
                 sixteen_bit: str = "range", drop_remainder: bool = False):
    """Builds the input pipeline for training or evaluation.

    Args:
        image_set: from ``data.from_directory``, ``from_csv`` or ``from_tfds`` (or a split of one).
        image_size: (height, width) the images are resized to.
        batch_size: images per batch.
        augment: None, "radimagenet" (the reference's training augmentation), "radimagenet_ct"
            (without rotation and flip, as the CT tasks) or an ``Augment(...)``.
        shuffle: shuffle the images each epoch (use False for validation and test).
        cache: True (in memory), a file path prefix (on disk; the file is named by the images and decode
            settings it holds, so different splits never share one), or False.
        seed: makes shuffling and augmentation reproducible (still different in every epoch).
        interpolation: resize method; "nearest" reproduces the reference loader.
        on_bad: "raise" or "skip" for unreadable files (checked before anything is decoded).
        backbone: if given, image_size is checked against its minimum input size.
        shuffle_buffer: the most images the shuffle buffer holds.
        dicom_window: (center, width) for DICOM files, overriding the files' own window.
        sixteen_bit: "range" (a 16-bit image's own min..max → 0..255) or "full" (0..65535 → 0..255).
        drop_remainder: drop the last, smaller batch.

    Returns:
        A ``tf.data.Dataset`` of (uint8 images (batch, H, W, 3), float32 one-hot labels (batch, classes)).
    """
    import tensorflow as tf

    if not isinstance(image_set, ImageSet):
        raise TypeError(f"Expected an ImageSet (from radtransfer.data.from_...). Received: {type(image_set).__name__}")
    if len(image_set) == 0:
        raise ValueError("The image set is empty: there is nothing to build a dataset from.")
    height, width = _check_size(image_size, backbone)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Expected a positive integer batch_size. Received: batch_size={batch_size!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"Unknown interpolation {interpolation!r}; expected one of {INTERPOLATIONS}."
                         f"{did_you_mean(interpolation, INTERPOLATIONS)}")
    if sixteen_bit not in ("range", "full"):
        raise ValueError(f"Expected sixteen_bit='range' or 'full'. Received: {sixteen_bit!r}")
    params = get_augment(augment)
    image_set, gray, dicom = validate_images(image_set, on_bad)
    num_classes = image_set.num_classes
    # Grayscale sets keep one channel through resize, cache and augmentation (a third of the work and
    # memory) and become three identical channels at the end.
    channels = 1 if gray else 3

    def resize(image):
        resized = tf.image.resize(tf.cast(image, tf.float32), (height, width), method=interpolation)
        return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)

    if image_set.paths is None:
        images = [_as_rgb_uint8(np.asarray(im))[..., :channels] for im in image_set.images]
        resized = np.stack([resize(im).numpy() for im in images])
        dataset = tf.data.Dataset.from_tensor_slices((resized, image_set.labels))
    else:
        paths = np.asarray(image_set.paths, dtype=str)
        dataset = tf.data.Dataset.from_tensor_slices((paths, dicom, image_set.labels))

        def read_dicom_np(path):
            return read_dicom(path.decode(), window=dicom_window)

        def load(path, is_dcm, label):
            image = tf.cond(
                is_dcm,
                lambda: tf.numpy_function(read_dicom_np, [path], tf.uint8, stateful=False)[..., :channels],
                lambda: decode_image_tf(tf.io.read_file(path), sixteen_bit, channels),
            )
            image.set_shape([None, None, channels])
            return resize(image), label

        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    dataset = dataset.map(
        lambda image, label: (image, tf.one_hot(label, num_classes, dtype=tf.float32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if cache is True:
        dataset = dataset.cache()
    elif cache:
        dataset = dataset.cache(cache_path(cache, image_set, (height, width), interpolation, channels, dicom_window,
                                           sixteen_bit))
    stream = DataStream(dataset, len(image_set), batch_size, shuffle, min(len(image_set), shuffle_buffer), params,
                        seed, channels, drop_remainder)
    stream.describe = lambda: {  # hashed only when a run's fingerprint asks (not for evaluation)
        "images": content_hash(image_set), "n": len(image_set), "image_size": [height, width],
        "interpolation": interpolation, "batch_size": batch_size, "shuffle": shuffle,
        "augment": None if params is None else repr(params), "dicom_window": dicom_window,
        "sixteen_bit": sixteen_bit, "drop_remainder": drop_remainder}
    result = stream.dataset()
    result.radtransfer_stream = stream
    return result


def cache_path(prefix, image_set: ImageSet, size, interpolation, channels, dicom_window, sixteen_bit) -> str:
    """The file cache of one set of images read one way: ``<prefix>_<content hash>``.

    TensorFlow reuses any existing cache file of a prefix, whichever dataset asks; naming the file by what it
    holds (the files, labels and decode settings) means two splits, two folds or two datasets never read each
    other's images.
    """
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256(content_hash(image_set).encode())
    for part in (list(size), interpolation, channels, dicom_window, sixteen_bit):
        digest.update(repr(part).encode())
    prefix = Path(str(prefix)).expanduser()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    return f"{prefix}_{digest.hexdigest()[:16]}"


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


@dataclass
class DataStream:
    """A cached, unbatched dataset and how to draw epochs from it.

    ``epoch(k, seed)`` gives epoch k's batches, shuffled and augmented from streams derived from
    (seed, k) alone: the same in a run resumed at epoch k as in one that never stopped. ``dataset()``
    is the plain form that ``make_dataset`` returns (reshuffled on every iteration).
    """

    base: object            # the cached, unbatched tf.data.Dataset of (image, one-hot label)
    size: int
    batch_size: int
    shuffle: bool
    buffer: int
    params: object          # augmentation parameters, or None
    seed: int | None
    channels: int
    drop_remainder: bool
    describe: object = None  # () -> what the images and decode settings are (for run fingerprints)

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

    def dataset(self):
        import tensorflow as tf

        dataset = self.base
        if self.shuffle:
            dataset = dataset.shuffle(self.buffer, seed=self.seed, reshuffle_each_iteration=True)
        seeds = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True).batch(2)
        return self._finish(dataset, seeds)

    def epoch(self, epoch: int, seed: int | None = None):
        """Epoch ``epoch``'s dataset; its randomness depends only on (seed, epoch).

        Args:
            epoch: the epoch's index (0-based).
            seed: the base seed (default: the stream's own; a random one if neither is set).
        """
        import tensorflow as tf

        from ..seeding import derive_seed, fresh_seed

        base_seed = seed if seed is not None else (self.seed if self.seed is not None else fresh_seed())
        dataset = self.base
        if self.shuffle:
            dataset = dataset.shuffle(self.buffer, seed=derive_seed(base_seed, "shuffle", epoch),
                                      reshuffle_each_iteration=False)
        seeds = tf.data.Dataset.random(seed=derive_seed(base_seed, "augment", epoch)).batch(2)
        return self._finish(dataset, seeds)


def stream_of(dataset) -> DataStream | None:
    """The DataStream behind a dataset made by ``make_dataset`` (None for any other dataset)."""
    return getattr(dataset, "radtransfer_stream", None)


def _to_rgb_batch(images):
    import tensorflow as tf

    if images.shape[-1] == 1:
        return tf.repeat(images, 3, axis=-1)
    return images


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype != np.uint8:
        wide = image.dtype == np.uint16 or image.max() > 255
        image = _to_uint8_range(image.astype(np.float32), None if wide else (0, 255))
    if image.shape[-1] < 3:
        image = np.repeat(image[..., :1], 3, axis=-1)
    return image[..., :3]
