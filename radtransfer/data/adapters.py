"""What data was given, decided in one place for training, evaluation and prediction (keras's data_adapters).

A caller may pass an ImageSet, a dataset from ``make_dataset``, a plain ``tf.data.Dataset``, a
``keras.utils.PyDataset``, ``(images, labels)`` arrays, or (for prediction) image files, folders and CSV
manifests. ``kind_of`` names which; ``for_training``, ``for_evaluation`` and ``for_prediction`` turn each kind they
accept into what their caller needs, and refuse the others with one message shape (``refuse``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..backend import image_path
from ..errors import ClassMismatchError
from .cache import LOG
from .imageset import ImageSet
from .tf_data.stream import stream_of

IMAGE_SET_BATCH_SIZE = 32  # batch_size=None for ImageSets and arrays
IMAGE_SET_AUGMENT = "radimagenet"  # augment="auto" for a training ImageSet
UNKNOWN = "unknown"  # what a plain tf.data dataset or PyDataset does, when it cannot be read off

KINDS = {
    "image_set": "an ImageSet",
    "make_dataset": "a dataset from data.make_dataset",
    "tf_data": "a plain tf.data.Dataset",
    "py_dataset": "a keras.utils.PyDataset",
    "arrays": "(images, labels) arrays",
    "files": "image files, folders or CSV manifests",
    "parts": "a dict of parts (as data.from_split_directory reads a pre-split folder)",
}


def _is_pair(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(hasattr(v, "shape") for v in value)


def _is_files(value) -> bool:
    items = value if isinstance(value, (list, tuple)) else [value]
    return bool(items) and all(isinstance(item, (str, os.PathLike)) for item in items)


def kind_of(value) -> str:
    """Which kind of data ``value`` is: a key of ``KINDS``, or "unknown"."""
    import keras

    if isinstance(value, ImageSet):
        return "image_set"
    if _is_pair(value):
        return "arrays"
    if isinstance(value, keras.utils.PyDataset):
        return "py_dataset"
    if stream_of(value) is not None:
        return "make_dataset"
    if hasattr(value, "element_spec"):
        return "tf_data"
    if _is_files(value):
        return "files"
    if isinstance(value, dict) and value and all(isinstance(v, ImageSet) for v in value.values()):
        return "parts"
    return "unknown"


def refuse(value, argument: str, purpose: str, accepted) -> TypeError:
    """The one error for data of a kind a call does not take: what it takes, what it got, what to pass."""
    kind = kind_of(value)
    got = KINDS.get(kind, f"a {type(value).__name__}")
    takes = ", ".join(KINDS[k] for k in accepted)
    return TypeError(
        f"{purpose} takes {argument} as {takes}; received {got}. Pass one of those (an ImageSet from "
        "radtransfer.data.from_... reads files as training did)."
    )


def require_image_set(value, argument: str, purpose: str) -> ImageSet:
    """``value`` when it is an ImageSet; else the one-line refusal: a grid makes its own folds (or split) of one set
    of images, read from files or memory, so it needs the set itself, not batches or parts."""
    if isinstance(value, ImageSet):
        return value
    if kind_of(value) == "parts":
        raise TypeError(
            f"{purpose} takes {argument} as one ImageSet and makes its own folds or split; received {KINDS['parts']}. "
            "Pass one ImageSet of all the images (e.g. data.from_csv on a manifest listing every part's files)."
        )
    raise refuse(value, argument, purpose, ("image_set",))


# -- training -------------------------------------------------------------------------------------------------


@dataclass
class TrainingData:
    """Training and validation data as fine_tune's epoch loop uses them.

    Attributes:
        train_epoch: ``(epoch, seed) -> dataset``: one epoch's batches, drawn from (seed, epoch) when ``exact``.
        val: the validation batches.
        train_size: training images, when known.
        class_names: from ImageSets, else None.
        signature: what each part is (images' hash, decode settings), for the run's fingerprint.
        exact: whether epochs are derived from (seed, epoch), so a resumed run is exact.
        sources: the datasets read, to name a file that fails to decode.
        read_settings: how the training images were read (saved with the model).
        batch_size: the training batches' size (None when it cannot be read off the data).
        augment: the training augmentation (None, an Augment, or ``UNKNOWN``).
        kind: the kind of the training data (a key of ``KINDS``).
        device_augment: the augmentation to apply on the device (an Augment), when the batches carry transforms
            for a model wrapped by ``device_augment.with_device_augment`` (the numpy path); else None.
        fit_val: the validation batches as the fitted model takes them (with identity transforms on the numpy
            path), when they differ from ``val`` (which always holds plain (images, one-hot labels) batches).
    """

    train_epoch: object
    val: object
    train_size: int | None
    class_names: list | None
    signature: dict
    exact: bool
    sources: tuple = ()
    read_settings: dict | None = None
    batch_size: int | None = None
    augment: object = None
    kind: str = "image_set"
    device_augment: object = None
    fit_val: object = None

    @property
    def noun(self) -> str:
        """The training data's kind in a word or two, for messages ("dataset", "tf.data dataset", ...)."""
        return {
            "make_dataset": "dataset",
            "tf_data": "tf.data dataset",
            "py_dataset": "PyDataset",
            "image_set": "ImageSet",
            "arrays": "arrays",
        }[self.kind]


def for_training(
    train, val, *, image_size, num_classes: int, batch_size: int | None = None, augment="auto", seed: int | None = None
) -> TrainingData:
    """Training and validation data of any accepted kind, checked against the model's classes.

    Args:
        train, val: ImageSets (read at ``image_size`` with ``batch_size``, and ``augment`` for training: "auto"
            means "radimagenet"), datasets from ``make_dataset`` (kept as they are), plain ``tf.data``
            datasets or PyDatasets of (images, one-hot labels), or ``(images, labels)`` arrays (never
            augmented: an explicit ``augment`` is warned about).
        num_classes: the model's outputs.
        batch_size: for ImageSets and arrays (None: 32).
        seed: the ImageSet pipeline's seed.
    """
    from .tf_data.pipeline import make_dataset

    kinds = {kind_of(train), kind_of(val)}
    if "arrays" in kinds:
        return _arrays_for_training(train, val, image_size, num_classes, batch_size, augment)
    if kinds == {"image_set"} and image_path() == "numpy":
        return _sequences_for_training(train, val, image_size, batch_size, augment, seed)
    for value, argument in ((train, "train"), (val, "val")):
        if kind_of(value) not in ("image_set", "make_dataset", "tf_data", "py_dataset"):
            raise refuse(value, argument, "fine_tune", ("image_set", "make_dataset", "tf_data", "py_dataset", "arrays"))
    class_names = None
    batch_size = batch_size or IMAGE_SET_BATCH_SIZE
    if isinstance(train, ImageSet):
        augment = IMAGE_SET_AUGMENT if augment == "auto" else augment
        class_names = list(train.class_names)
        train = make_dataset(
            train, image_size=image_size, batch_size=batch_size, augment=augment, shuffle=True, seed=seed
        )
    if isinstance(val, ImageSet):
        if class_names is not None and list(val.class_names) != class_names:
            raise ClassMismatchError(
                f"The validation set's classes {list(val.class_names)} differ from the training set's {class_names}."
            )
        class_names = class_names or list(val.class_names)
        val = make_dataset(val, image_size=image_size, batch_size=batch_size, shuffle=False)
    _check_dataset(train, "training", num_classes)
    _check_dataset(val, "validation", num_classes)
    signature = {name: getattr(stream_of(d), "signature", None) for name, d in (("train", train), ("val", val))}
    stream = stream_of(train)
    if stream is not None:
        return TrainingData(
            stream.epoch,
            val,
            stream.size,
            class_names,
            signature,
            True,
            (train, val),
            stream.settings.to_dict(),
            stream.batch_size,
            stream.params,
            "make_dataset",
        )
    if kind_of(train) == "py_dataset":
        size, batch = None, len(np.asarray(train[0][0]))
    else:
        size, batch = _known_size(train), train.element_spec[0].shape[0]
    return TrainingData(
        lambda epoch, seed: train,
        val,
        size,
        class_names,
        signature,
        False,
        (train, val),
        batch_size=batch,
        augment=UNKNOWN,
        kind=kind_of(train),
    )


def _sequences_for_training(train, val, image_size, batch_size, augment, seed) -> TrainingData:
    """ImageSets on the numpy path (JAX, PyTorch, no TensorFlow): ``ImageSequence`` batches of cached uint8 images,
    epoch e's order from (seed, e); augmentation drawn on the host per batch and applied on the device by the
    model fine_tune wraps (``TrainingData.device_augment``)."""
    from .augment import get_augment
    from .py_dataset.sequence import ImageSequence, TransformSequence

    if list(val.class_names) != list(train.class_names):
        raise ClassMismatchError(
            f"The validation set's classes {list(val.class_names)} differ from the training set's "
            f"{list(train.class_names)}."
        )
    params = get_augment(IMAGE_SET_AUGMENT if augment == "auto" else augment)
    params = None if params is None or params.is_identity else params
    batch_size = batch_size or IMAGE_SET_BATCH_SIZE
    # Threads that make the next batches (an index into the cached array, the transforms) while the device trains.
    workers = min(4, max(1, (os.cpu_count() or 2) // 2))
    common = dict(image_size=image_size, batch_size=batch_size, workers=workers)
    sequence = ImageSequence(train, shuffle=True, seed=seed or 0, **common)
    val_sequence = ImageSequence(val, shuffle=False, **common)
    fed = TransformSequence(sequence, params) if params is not None else sequence
    return TrainingData(
        fed.for_epoch,
        val_sequence,
        len(sequence.image_set),
        list(train.class_names),
        {"train": {**sequence.signature, "augment": repr(params)}, "val": val_sequence.signature},
        True,
        (),
        sequence.settings.to_dict(),
        batch_size,
        params,
        "image_set",
        device_augment=params,
        fit_val=TransformSequence(val_sequence) if params is not None else None,
    )


def _arrays_for_training(train, val, image_size, num_classes, batch_size, augment) -> TrainingData:
    """(images, labels) arrays: batches through a keras PyDataset, no TensorFlow (JAX and PyTorch users)."""
    from .py_dataset.arrays import ArrayStream, as_arrays

    if not (_is_pair(train) and _is_pair(val)):
        raise ValueError("Pass train and val both as (images, labels) arrays, or both as ImageSets / datasets.")
    if augment not in (None, "auto"):
        warnings.warn(
            f"augment={augment!r} is not applied to in-memory arrays (augmentation is part of the tf.data "
            "pipeline); pass ImageSets to augment, or augment=None to silence this.",
            stacklevel=4,
        )
    batch_size = batch_size or IMAGE_SET_BATCH_SIZE
    stream = ArrayStream(*as_arrays(train, num_classes, image_size, "train"), batch_size, shuffle=True)
    val_stream = ArrayStream(*as_arrays(val, num_classes, image_size, "val"), batch_size, shuffle=False)
    signature = {"train": stream.signature, "val": val_stream.signature}
    return TrainingData(
        stream.epoch,
        val_stream.batches(),
        stream.size,
        None,
        signature,
        True,
        batch_size=batch_size,
        augment=None,
        kind="arrays",
    )


def _dataset_width(dataset):
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise ValueError(
            "Expected a dataset of (images, one-hot labels) pairs, e.g. from radtransfer.data.make_dataset."
        )
    return spec[1].shape[-1]


def _check_dataset(dataset, name: str, num_classes: int) -> None:
    if kind_of(dataset) == "py_dataset":
        if dataset.num_batches == 0:
            raise ValueError(f"The {name} dataset is empty.")
        labels = np.asarray(dataset[0][1])
        if labels.ndim != 2 or labels.shape[-1] != num_classes:
            raise ValueError(
                f"The {name} PyDataset yields labels of shape {labels.shape}; expected one-hot rows of "
                f"{num_classes} classes (the model's outputs)."
            )
        return
    import tensorflow as tf

    width = _dataset_width(dataset)
    if width is not None and width != num_classes:
        raise ValueError(
            f"The {name} dataset has labels for {width} classes but the model predicts {num_classes}. "
            "Build the model with num_classes equal to the number of classes in the data."
        )
    cardinality = int(dataset.cardinality())
    if cardinality == 0 or (cardinality == tf.data.UNKNOWN_CARDINALITY and not any(True for _ in dataset.take(1))):
        raise ValueError(f"The {name} dataset is empty.")


def _known_size(dataset):
    cardinality = int(dataset.cardinality())
    batch = dataset.element_spec[0].shape[0]
    if cardinality > 0 and batch is not None:
        return cardinality * batch
    return None


# -- evaluation -----------------------------------------------------------------------------------------------


@dataclass
class EvaluationData:
    """Labelled data as ``evaluate`` reads it: batches of (images, one-hot labels) in a known order.

    Attributes:
        batches: an iterable of (images, one-hot labels) batches.
        class_names: the data's classes (an ImageSet's; else those given).
        patient_ids: one id per image, in the order ``order`` restores.
        order: ``order[i]`` is the set index of the i-th image read (None: read in the set's order).
    """

    batches: object
    class_names: list | None = None
    patient_ids: list | None = None
    order: np.ndarray | None = field(default=None, repr=False)

    def in_set_order(self, y_true, probabilities):
        """Predictions read in ``order``, put back in the set's order (where patient ids belong)."""
        if self.order is None:
            return y_true, probabilities
        inverse = np.argsort(self.order)
        return y_true[inverse], probabilities[inverse]


def for_evaluation(
    data, *, num_classes: int, input_size, batch_size: int = 32, settings=None, class_names=None, patient_ids=None
) -> EvaluationData:
    """Labelled data of any accepted kind, read once, in a known order, neither shuffled nor augmented.

    An ImageSet is read with ``settings`` (a ``ReadSettings``: as the model's training images were) and brings its
    class names and patient ids; a ``make_dataset`` dataset that shuffles or augments is read once in its stream's
    order, unaugmented; a plain ``tf.data`` dataset that shuffles is refused with ``patient_ids`` (they could not be
    matched to its images).
    """

    kind = kind_of(data)
    if kind == "image_set":
        names = class_names or list(data.class_names)
        ids = patient_ids if patient_ids is not None else (None if data.patient_ids is None else list(data.patient_ids))
        return EvaluationData(read_in_order(data, batch_size, settings), names, ids)
    if kind == "arrays":
        from .py_dataset.arrays import ArrayStream, as_arrays

        arrays = as_arrays(data, num_classes, tuple(input_size), "dataset")
        return EvaluationData(ArrayStream(*arrays, batch_size, shuffle=False).batches(), class_names, patient_ids)
    if kind in ("make_dataset", "tf_data"):
        width = data.element_spec[1].shape[-1] if isinstance(data.element_spec, tuple) else None
        if width is not None and width != num_classes:
            raise ClassMismatchError(
                f"The dataset has labels for {width} classes but the model predicts {num_classes}."
            )
    if kind == "make_dataset":
        stream = stream_of(data)
        if stream.shuffle or stream.augmenting:
            LOG.info("evaluate reads the dataset's images once, in the set's order, without shuffling or augmentation")
            return EvaluationData(stream.ordered(), class_names, patient_ids, stream.order)
        return EvaluationData(data, class_names, patient_ids)
    if kind == "tf_data":
        if patient_ids is not None and _shuffles(data):
            raise ValueError(
                "evaluate was given patient_ids with a tf.data dataset that shuffles, so the ids cannot be "
                "matched to its images. Pass the ImageSet (it brings its patient ids), or a dataset made "
                "with shuffle=False."
            )
        return EvaluationData(data, class_names, patient_ids)
    if kind == "py_dataset":
        return EvaluationData(data, class_names, patient_ids)
    raise refuse(data, "dataset", "evaluate", ("image_set", "make_dataset", "tf_data", "py_dataset", "arrays"))


def read_in_order(image_set: ImageSet, batch_size: int, settings=None):
    """An ImageSet's images once, in its order, unshuffled, unaugmented and uncached, as batches of (uint8 images,
    one-hot labels) read with ``settings`` (a ``ReadSettings``; None: the defaults): a ``make_dataset`` dataset on
    the tf.data path, an ``ImageSequence`` on the numpy path (``backend.image_path``)."""
    if image_path() == "numpy":
        from .py_dataset.sequence import ImageSequence

        return ImageSequence(image_set, batch_size=batch_size, shuffle=False, cache="none", settings=settings)
    from .tf_data.pipeline import make_dataset

    return make_dataset(image_set, batch_size=batch_size, shuffle=False, cache=False, settings=settings)


def _shuffles(dataset) -> bool:
    """Whether a tf.data pipeline has a shuffling stage (read from its graph)."""
    try:
        import tensorflow as tf

        graph = tf.compat.v1.GraphDef()
        graph.ParseFromString(dataset._as_serialized_graph().numpy())
    except Exception:  # a graph TensorFlow cannot serialize: nothing to tell
        return False
    return any("Shuffle" in node.op for node in graph.node) or any(
        "Shuffle" in node.op for function in graph.library.function for node in function.node_def
    )


# -- prediction -----------------------------------------------------------------------------------------------


UNLABELLED = ("?",)  # the one class of the images handed to predict


def for_prediction(images, *, image_col: str = "path", patient_col: str | None = None) -> tuple[ImageSet, list]:
    """Unlabelled images as (an ImageSet of the one class "?", one name per image): from files, folders (DICOM series
    in instance order), CSV manifests, or an ImageSet of files or of in-memory images (from_tfds, from_volumes, or
    arrays; named as ``ImageSet.image_names`` names them). Datasets and arrays are refused: prediction reads images
    as the model's training did (its size, interpolation and windows), which batches already made cannot be."""
    from .sources import collect_images

    kind = kind_of(images)
    if kind == "image_set":
        unlabelled = ImageSet(
            paths=images.paths,
            images=images.images if images.paths is None else None,
            labels=np.zeros(len(images), dtype=np.int64),
            class_names=UNLABELLED,
            patient_ids=images.patient_ids,
        )
        return unlabelled, images.image_names()
    if kind == "files":
        paths, patients = collect_images(images, image_col=image_col, patient_col=patient_col)
        unlabelled = ImageSet(
            paths=paths,
            labels=np.zeros(len(paths), dtype=np.int64),
            class_names=UNLABELLED,
            patient_ids=None if patients is None else [p if p is not None else "" for p in patients],
        )
        return unlabelled, [str(p) for p in paths]
    raise refuse(images, "images", "predict", ("files", "image_set"))
