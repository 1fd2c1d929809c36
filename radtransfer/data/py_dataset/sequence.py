"""ImageSequence: an ImageSet → a ``keras.utils.PyDataset`` of (uint8 images, one-hot labels), without TensorFlow.

The input path for the JAX and PyTorch backends, and for machines without TensorFlow: files are decoded and
resized by ``numpy_read`` (the pixels of ``make_dataset`` within one grey level), cached once as a uint8
array by ``array_cache`` (in memory or memory-mapped on disk, chosen by the same ``cache="auto"`` rule), and
served in batches by a PyDataset.

Why a PyDataset and not grain: the PyDataset ships with Keras and runs on all three backends (threads or
processes, ``workers`` / ``use_multiprocessing``), while grain is not a dependency of radtransfer and is not
installed here; over a cached uint8 array a batch is one fancy index, so a thread pool is enough.

Order: epoch e's order is ``epoch_order(n, seed, e)``, a NumPy permutation seeded by
``derive_seed(seed, "shuffle", e)``: a pure function of (seed, epoch), so a run resumed at epoch e sees what an
uninterrupted one saw. It is not the tf.data path's order: that comes from ``tf.data.Dataset.shuffle``'s own
random generator (over a content-seeded base order), which NumPy does not reproduce.
"""

from __future__ import annotations

import logging

import keras
import numpy as np

from ...utils.seeding import derive_seed, fresh_seed
from ..cache import LOG, cache_name, choose_cache, claim, content_hash
from ..decode import READ_OPTIONS, ReadSettings, read_options
from ..failures import validate_images
from ..imageset import ImageSet
from ..intensity import as_uint8
from .array_cache import cached_images, open_array_cache
from .device_augment import random_transforms_np
from .numpy_read import read_image_uint8, resize_uint8

__all__ = ["ImageSequence", "TransformSequence", "epoch_order"]

CACHE_TAG = "npy"  # a numpy cache's name differs from the tf.data cache's of the same images and settings


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The order of epoch ``epoch``: a permutation of ``range(size)`` that depends only on (seed, epoch).

    ``np.random.default_rng(derive_seed(seed, "shuffle", epoch)).permutation(size)``.
    """
    return np.random.default_rng(derive_seed(seed, "shuffle", int(epoch))).permutation(size)


class ImageSequence(keras.utils.PyDataset):
    """An ImageSet as batches of (uint8 images (b, H, W, 3), float32 one-hot labels (b, classes)).

    Reads files as ``make_dataset`` does (same arguments, same pixels within one grey level), without
    TensorFlow. Every image appears once per epoch; the last, smaller batch is kept unless ``drop_remainder``
    (as ``make_dataset``). No augmentation is applied.

    Epoch e's order depends only on (seed, e). The epoch is set exactly by ``set_epoch(e)`` (or ``epoch=e``),
    e.g. before each ``fit`` of an epoch loop, or by the callback ``epoch_callback()`` from ``fit``'s own epoch
    index (``initial_epoch`` included); otherwise it advances at each of Keras's ``on_epoch_end`` calls.
    Keras's ``fit(shuffle=True)`` (its default) reorders a PyDataset's batch indices with Python's global
    ``random``; pass ``shuffle=False`` to ``fit`` to keep this order exact.

    Args:
        image_set: from ``data.from_directory``, ``from_csv``, ``from_volumes`` (or a split).
        image_size: (height, width) the images are resized to (default: ``settings``', else 256×256).
        batch_size: images per batch.
        shuffle: a new order every epoch (``epoch_order``); False: the set's order, for evaluation.
        cache: "auto", True / "memory", False / "none", or a file path prefix, as ``make_dataset``'s; a disk cache
            is a memory-mapped ``.npy`` file filled once, under a private name, and published complete.
        seed: the base seed of the per-epoch order (default: a fresh one, kept in ``.seed``).
        epoch: the epoch the next pass is (default 0).
        settings: how files are read, as one ``ReadSettings``; the read keywords, when given, replace its fields.
        **options: ``make_dataset``'s read keywords (``interpolation``, ``antialias``, ``sixteen_bit``,
            ``dicom_window``, ``frame``), ``on_bad``, ``backbone``, ``drop_remainder``, ``memory_budget`` and
            ``cache_dir``, as there; and ``workers`` (PyDataset workers, threads or processes with
            ``use_multiprocessing``, that make batches; default 1), ``use_multiprocessing`` (processes instead of
            threads) and ``max_queue_size`` (batches made ahead; default 10). Any other keyword is refused.
    """

    OPTIONS = {
        **READ_OPTIONS,
        "on_bad": "raise",
        "backbone": None,
        "drop_remainder": False,
        "memory_budget": None,
        "cache_dir": None,
        "workers": 1,
        "use_multiprocessing": False,
        "max_queue_size": 10,
    }
    DECLARED = ("image_set", "image_size", "batch_size", "shuffle", "cache", "seed", "epoch", "settings")

    def __init__(
        self,
        image_set: ImageSet,
        image_size=None,
        batch_size: int = 32,
        shuffle: bool = True,
        cache="auto",
        seed: int | None = None,
        epoch: int = 0,
        *,
        settings: ReadSettings | None = None,
        **options,
    ):
        self.settings, options = read_options(
            "ImageSequence", settings, image_size, options, self.OPTIONS, self.DECLARED
        )
        super().__init__(
            workers=options["workers"],
            use_multiprocessing=options["use_multiprocessing"],
            max_queue_size=options["max_queue_size"],
        )
        if not isinstance(image_set, ImageSet):
            raise TypeError(
                f"Expected an ImageSet (from radtransfer.data.from_...). Received: {type(image_set).__name__}"
            )
        if len(image_set) == 0:
            raise ValueError("The image set is empty: there is nothing to build batches from.")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"Expected a positive integer batch_size. Received: batch_size={batch_size!r}")
        drop_remainder = options["drop_remainder"]
        image_set, gray, _ = validate_images(image_set, options["on_bad"], frame=self.settings.frame)
        self.image_set = image_set
        self.channels = 1 if gray else 3
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        self.seed = int(seed) if seed is not None else fresh_seed()
        self.size = len(image_set)
        self.num_classes = image_set.num_classes
        # a multi-label set's multi-hot rows; for one class per image, one-hot rows made per batch from the labels
        self._targets = image_set.targets() if image_set.multi_label else None
        self._one_hot = np.eye(self.num_classes, dtype=np.float32)
        if self.drop_remainder and self.size < batch_size:
            raise ValueError(
                f"drop_remainder=True with {self.size} images and batch_size={batch_size} leaves no batch: "
                "lower batch_size or keep the remainder."
            )
        height, width = self.settings.image_size
        digest = content_hash(image_set)
        name = cache_name(
            image_set,
            self.settings,
            self.channels,
            False,
            digest,
            files_changed=cache not in (True, False, None, "memory", "none"),
        )
        nbytes = self.size * height * width * self.channels
        self.cache = choose_cache(cache, nbytes, f"{name}-{CACHE_TAG}", options["memory_budget"], options["cache_dir"])
        LOG.log(
            logging.INFO if cache == "auto" else logging.DEBUG,
            "%d images at %dx%dx%d: cache %s (%s)",
            self.size,
            height,
            width,
            self.channels,
            self.cache.mode,
            self.cache.reason,
        )
        self.digest = digest
        self._images = cached_images(self.size, (height, width, self.channels), self.read, self.cache)
        if self.cache.mode == "memory":
            claim(self, nbytes)
        self.set_epoch(epoch)

    # -- reading ---------------------------------------------------------------------------------------------

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` of the set, decoded and resized: uint8 (height, width, channels)."""
        if self.image_set.paths is not None:
            return read_image_uint8(self.image_set.paths[index], self.settings, channels=self.channels)
        image = as_uint8(np.asarray(self.image_set.images[index]))
        image = image[..., :1] if self.channels == 1 else _rgb(image)
        return resize_uint8(image, self.settings.image_size, self.settings.interpolation, self.settings.antialias)

    def images(self, indices) -> np.ndarray:
        """The images at ``indices`` (in that order) as uint8 (len, height, width, 3)."""
        indices = np.asarray(indices, dtype=np.int64)
        if self._images is None and self.cache.mode == "disk":  # in a worker process: reopen the file
            self._images = open_array_cache(self.cache.path)
        if self._images is not None:
            batch = self._images[indices]
        else:
            batch = np.stack([self.read(int(i)) for i in indices])
        return np.repeat(batch, 3, axis=-1) if self.channels == 1 else np.asarray(batch)

    # -- epochs ----------------------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Makes the next pass epoch ``epoch`` (its order is ``epoch_order(len(set), seed, epoch)``)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"Expected a non-negative integer epoch. Received: epoch={epoch!r}")
        self.epoch = int(epoch)
        self.order = epoch_order(self.size, self.seed, self.epoch) if self.shuffle else np.arange(self.size)
        self._began = False

    def for_epoch(self, epoch: int, seed: int) -> "ImageSequence":
        """This sequence as epoch ``epoch`` of a run whose base seed is ``seed`` (order ``epoch_order(n, seed,
        epoch)``, as the tf.data path derives its shuffle from (seed, epoch)); returns it."""
        self.seed = int(seed)
        self.set_epoch(epoch)
        return self

    @property
    def signature(self) -> dict:
        """What the batches are (images, decode settings, batching), for a run's fingerprint."""
        return {
            "images": self.digest,
            "n": self.size,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_remainder": self.drop_remainder,
            "path": "numpy",
            **self.settings.to_dict(),
        }

    def on_epoch_begin(self):
        """Called by Keras when an epoch starts (after its worker threads or processes have started)."""
        self._began = True

    def on_epoch_end(self):
        """Called by Keras after each epoch: the next pass is the next epoch.

        Keras also calls it where no epoch was read: before each ``fit`` (``EpochIterator.reset``; ignored, as no
        epoch began since the last call) and after the one batch the first ``fit`` of a compiled model reads to
        build it (counted: Keras's hooks do not tell it from an epoch). So epochs differ without more ado, and
        ``epoch_callback()`` (or ``set_epoch``) makes epoch e's order exactly ``epoch_order(n, seed, e)``.
        """
        if self._began:
            self.set_epoch(self.epoch + 1)

    def epoch_callback(self):
        """A Keras callback that sets this sequence's epoch to fit's epoch index as each epoch begins.

        ``model.fit(seq, epochs=n, initial_epoch=e0, shuffle=False, callbacks=[seq.epoch_callback()])`` reads epoch
        e in the order ``epoch_order(len(seq.image_set), seq.seed, e)``, resumed or not. (Keras runs callbacks'
        ``on_epoch_begin`` before it starts the epoch's worker threads or processes.)
        """
        return _EpochSync(self)

    def __len__(self) -> int:
        if self.drop_remainder:
            return self.size // self.batch_size
        return -(-self.size // self.batch_size)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)) and index < 0:
            index += len(self)
        if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self):
            raise IndexError(f"Batch index {index!r} is out of range: this sequence has {len(self)} batches.")
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        labels = self._targets[chosen] if self._targets is not None else self._one_hot[self.image_set.labels[chosen]]
        return self.images(chosen), labels

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.cache.mode == "disk":
            state["_images"] = None  # a worker process maps the file itself, not a pickled copy of it
        return state


class TransformSequence(keras.utils.PyDataset):
    """An ImageSequence's batches with one augmentation transform per image, for a model wrapped by
    ``device_augment.with_device_augment``: ``({"images": uint8, "transforms": (b, 8) float32}, labels)``.

    Batch i of epoch e draws its transforms from ``derive_seed(seed, "augment", e, i)`` alone (NumPy, on the host:
    eight numbers per image), so worker order does not matter and a resumed run draws what an uninterrupted one
    drew; the warp itself runs on the device. With ``params`` None every transform is the identity (validation).

    Args:
        sequence: the ImageSequence whose batches are augmented (its epoch and seed give this one's).
        params: an ``Augment``, or None for identity transforms.
    """

    IDENTITY = np.array([1, 0, 0, 0, 1, 0, 0, 0], dtype=np.float32)

    def __init__(self, sequence: ImageSequence, params=None):
        super().__init__(workers=sequence.workers, use_multiprocessing=sequence.use_multiprocessing)
        self.sequence, self.params = sequence, params

    def for_epoch(self, epoch: int, seed: int) -> "TransformSequence":
        self.sequence.for_epoch(epoch, seed)
        return self

    def __len__(self) -> int:
        return len(self.sequence)

    def __getitem__(self, index):
        images, labels = self.sequence[index]
        if self.params is None:
            transforms = np.tile(self.IDENTITY, (len(images), 1))
        else:
            batch = index + len(self) if index < 0 else index
            rng = np.random.default_rng(derive_seed(self.sequence.seed, "augment", self.sequence.epoch, int(batch)))
            height, width = images.shape[1:3]
            transforms = random_transforms_np(len(images), height, width, self.params, rng).astype(np.float32)
        return {"images": images, "transforms": transforms}, labels


class _EpochSync(keras.callbacks.Callback):
    """Sets a sequence's epoch from ``fit``'s epoch index (see ``ImageSequence.epoch_callback``)."""

    def __init__(self, sequence: ImageSequence):
        super().__init__()
        self.sequence = sequence

    def on_epoch_begin(self, epoch, logs=None):
        self.sequence.set_epoch(epoch)


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.shape[-1] < 3:
        return np.repeat(image[..., :1], 3, axis=-1)
    return image[..., :3]
