"""In-memory arrays fed to Keras without TensorFlow: what ``fine_tune`` uses for ``(images, labels)`` pairs,
so that JAX and PyTorch users train with no tf.data pipeline (and no TensorFlow installed).

Images must already be at the model's input size (uint8 or float in 0–255, NHWC); there is no augmentation
on this path (augmentation is part of the tf.data pipeline). Shuffling is a full permutation per epoch
derived from (seed, epoch), so a resumed run replays the same order.
"""

from __future__ import annotations

import hashlib
import math

import keras
import numpy as np


class ArrayBatches(keras.utils.PyDataset):
    """Batches of (images, one-hot labels) in a given order."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, order: np.ndarray):
        super().__init__()
        self.images, self.labels, self.batch_size, self.order = images, labels, int(batch_size), order

    @property
    def num_batches(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int):
        if index >= self.num_batches:
            raise IndexError(index)
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.images[chosen], self.labels[chosen]


def as_arrays(pair, num_classes: int, image_size, name: str):
    """(images, one-hot float32 labels) from an ``(images, labels)`` pair; labels are class indices or
    one-hot rows.

    Raises:
        ValueError: shapes that do not fit the model (naming the argument, what was expected and received).
    """
    try:
        images, labels = pair
    except (TypeError, ValueError):
        raise ValueError(f"Expected {name}=(images, labels). Received: a {type(pair).__name__}") from None
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or tuple(images.shape[1:3]) != tuple(image_size):
        raise ValueError(
            f"Expected {name} images of shape (N, {image_size[0]}, {image_size[1]}, C) (the model's "
            f"input size). Received: {images.shape}"
        )
    if labels.ndim == 1:
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} labels must be class indices in [0, {num_classes}). Received: {labels.min()}..{labels.max()}"
            )
        labels = np.eye(num_classes, dtype=np.float32)[labels.astype(np.int64)]
    if labels.shape != (len(images), num_classes):
        raise ValueError(
            f"Expected {name} labels of shape ({len(images)},) or ({len(images)}, {num_classes}). "
            f"Received: {labels.shape}"
        )
    if len(images) == 0:
        raise ValueError(f"The {name} arrays are empty.")
    return images, labels.astype(np.float32)


class ArrayStream:
    """Epochs of shuffled batches over in-memory arrays; epoch k's order depends only on (seed, k)."""

    def __init__(self, images, labels, batch_size: int, shuffle: bool = True):
        self.images, self.labels, self.batch_size, self.shuffle = images, labels, batch_size, shuffle
        self.size = len(images)

    def epoch(self, epoch: int, seed: int | None = None) -> ArrayBatches:
        from ...utils.seeding import derive_seed, fresh_seed

        order = np.arange(self.size)
        if self.shuffle:
            base = seed if seed is not None else fresh_seed()
            order = np.random.default_rng(derive_seed(base, "shuffle", epoch)).permutation(self.size)
        return ArrayBatches(self.images, self.labels, self.batch_size, order)

    def batches(self) -> ArrayBatches:
        return ArrayBatches(self.images, self.labels, self.batch_size, np.arange(self.size))

    @property
    def signature(self) -> dict:
        digest = hashlib.sha256()
        for array in (self.images, self.labels):
            array = np.ascontiguousarray(array)
            digest.update(repr((array.shape, str(array.dtype))).encode())
            digest.update(array.tobytes())
        return {
            "arrays": digest.hexdigest()[:16],
            "n": self.size,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
        }
