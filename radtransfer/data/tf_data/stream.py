"""A data set's images as epochs: where they are cached, and how each epoch's shuffle and augmentation are drawn
from (seed, epoch) alone, so a resumed run sees what an uninterrupted one saw."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ...utils.progress import progress
from ...utils.seeding import derive_seed, fresh_seed
from ..cache import CacheChoice, ensure_disk_cache
from ..decode import ReadSettings
from ..failures import readable_pipeline_errors
from .augment import augment_batch
from .decode import to_rgb_batch


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

    load: object  # index dataset -> (image, one-hot label) dataset
    size: int
    batch_size: int
    shuffle: bool
    buffer: int
    params: object  # augmentation parameters, or None
    seed: int | None
    channels: int
    drop_remainder: bool
    cache: CacheChoice
    settings: ReadSettings
    paths: np.ndarray = None  # file paths in the stream's base order (None for in-memory images)
    describe: object = None  # () -> what the images and decode settings are (for run fingerprints)
    order: np.ndarray = None  # the base order: element i is image order[i] of the set

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
        batches = filled.map(lambda image, label: 0).batch(256).prefetch(1)
        with readable_pipeline_errors(self):
            for _ in progress(
                batches, total=-(-self.size // 256), desc="filling the disk cache", unit="batch", min_items=2
            ):
                beat()

    def _elements(self, shuffle_seed, reshuffle: bool):
        import tensorflow as tf

        if not self.shuffle:
            return self._cached()
        if self.cache.mode == "none":
            indices = tf.data.Dataset.range(self.size).shuffle(
                self.size, seed=shuffle_seed, reshuffle_each_iteration=reshuffle
            )
            return self.load(indices)
        buffer = self.size if self.cache.mode == "memory" else self.buffer
        return self._cached().shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=reshuffle)

    def _finish(self, dataset, augment_seeds):
        import tensorflow as tf

        dataset = dataset.batch(self.batch_size, drop_remainder=self.drop_remainder)
        if self.augmenting:
            augment = _augmentation(self.params)
            dataset = tf.data.Dataset.zip((dataset, augment_seeds)).map(
                lambda batch, s: (augment(batch[0], s), batch[1]),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
        elif self.channels == 1:
            dataset = dataset.map(
                lambda images, labels: (to_rgb_batch(images), labels),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
        return dataset.prefetch(tf.data.AUTOTUNE)

    def ordered(self):
        """The images once, in the base order (``order``), neither shuffled nor augmented: for evaluation."""
        import tensorflow as tf

        dataset = self._cached().batch(self.batch_size)
        if self.channels == 1:
            dataset = dataset.map(
                lambda images, labels: (to_rgb_batch(images), labels),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
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

        base_seed = seed if seed is not None else (self.seed if self.seed is not None else fresh_seed())
        seeds = tf.data.Dataset.random(seed=derive_seed(base_seed, "augment", epoch)).batch(2)
        return self._finish(self._elements(derive_seed(base_seed, "shuffle", epoch), False), seeds)


@functools.cache
def _augmentation(params):
    """(images, seed) -> augmented 3-channel images under ``params``, as one ``tf.function`` per process: each
    epoch's dataset (and each run's) calls the graph traced for the first instead of tracing it again."""
    import tensorflow as tf

    return tf.function(lambda images, seed: to_rgb_batch(augment_batch(images, params, seed)), reduce_retracing=True)


def stream_of(dataset) -> DataStream | None:
    """The DataStream behind a dataset made by ``make_dataset`` (None for any other dataset)."""
    return getattr(dataset, "radtransfer_stream", None)
