"""build_model: a keras.applications backbone with ImageNet or RadImageNet weights and a new head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .backbones import get_backbone
from .presets import preprocessing_for
from .weights import LoadedWeights, check_sha256, load_backbone_weights, resolve_weights, sha256sum

if TYPE_CHECKING:
    import keras

_LAYER_NAMES = ("preprocess", "backbone", "dropout", "predictions")


@dataclass(frozen=True)
class BuildInfo:
    """How a model was built; attached to it as ``model.radtransfer_info``."""

    backbone: str
    weights: str | None
    weights_source: str | None
    weights_path: str | None
    weights_sha256: str | None
    preprocessing: str
    num_classes: int
    input_shape: tuple
    dropout: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _check_input_shape(input_shape, spec) -> tuple:
    try:
        shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise ValueError(
            "Expected input_shape=(height, width, channels) with 1 or 3 channels, e.g. (256, 256, 3). "
            f"Received: input_shape={input_shape!r}"
        )
    for size in shape[:2]:
        if size is not None and size < spec.min_size:
            raise ValueError(
                f"{spec.display_name} needs inputs of at least {spec.min_size}×{spec.min_size} pixels. "
                f"Received: input_shape={input_shape!r}"
            )
    return shape


def resolve_preprocessing(preprocessing: str, spec, source: str | None) -> str:
    """Turns "auto" into the mode a weight source expects; validates explicit modes."""
    if str(preprocessing).lower() == "auto":
        return preprocessing_for(spec, source)
    from .preprocessing import check_mode  # the Keras layer module: imported when a model is made

    return check_mode(preprocessing)


def build_model(
    backbone: str = "densenet121",
    weights: str | None = "radimagenet",
    num_classes: int | None = None,
    input_shape=(256, 256, 3),
    dropout: float = 0.5,
    preprocessing: str = "auto",
    weights_dir=None,
    weights_sha256: str | None = None,
    name: str | None = None,
    num_labels: int | None = None,
) -> keras.Model:
    """Builds a classifier on a pretrained backbone, as the RadImageNet reference code did.

    The model is ``Input → "preprocess" → "backbone" → "dropout" → "predictions"``. The backbone is the
    keras.applications network (``include_top=False, pooling="avg"``) nested as one layer; the head is
    Dropout and a float32 softmax Dense layer.

    Args:
        backbone: "resnet50", "densenet121", "inception_v3" or "inception_resnet_v2" (or an alias
            such as "DenseNet121" or "IRV2", any case).
        weights: "radimagenet", "imagenet", None (random initialisation) or a path to a Keras 2
            ``.h5`` file. Files are searched in ``weights_dir``, ``$RADTRANSFER_WEIGHTS_DIR``,
            ``./weights`` and, for ImageNet, Keras's cache, then ImageNet files are downloaded.
        num_classes: number of output classes (at least 2, the default; two-class tasks use a two-column softmax
            as the reference did).
        input_shape: (height, width, channels) of the images, channels 1 or 3, values in [0, 255].
        dropout: dropout rate before the classifier.
        preprocessing: "auto" (the weight source's own normalization: RadImageNet → "radimagenet",
            ImageNet → the backbone's Keras mode, random → "radimagenet"), or one of "radimagenet",
            "caffe", "torch", "tf".
        weights_dir: a folder searched first for weight files.
        weights_sha256: if given, the weight file's sha256 must equal it.
        name: the model's name (default "<backbone>_<weights>").
        num_labels: for a multi-label task (findings that co-occur), the number of labels K: the head is then K
            independent float32 sigmoids instead of the softmax (``is_multi_label``), trained by fine_tune with binary
            cross-entropy; ``radtransfer_info.num_classes`` records K. Not with ``num_classes``.

    Returns:
        An uncompiled ``keras.Model`` with ``model.radtransfer_info`` describing how it was built.

    Raises:
        ValueError: a bad backbone name, weights value, shape, class count or dropout rate.
        WeightsNotFoundError: no weight file was found.
        WeightsFileError: the weight file is unreadable or does not fit the backbone.
    """
    import keras

    spec = get_backbone(backbone)
    shape = _check_input_shape(input_shape, spec)
    if num_labels is not None:
        num_classes = _check_num_labels(num_labels, num_classes)
    elif num_classes is None:
        num_classes = 2
    if num_labels is None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(
            "Expected num_classes to be an integer of at least 2 (a two-class task uses a two-column "
            f"softmax). Received: num_classes={num_classes!r}"
        )
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"Expected dropout in [0, 1). Received: dropout={dropout!r}")

    base, loaded = _backbone_with_weights(spec, weights, weights_dir, weights_sha256, shape, preprocessing)
    if spec.foundation and str(preprocessing).lower() == "auto":
        mode = loaded.preprocessing
    else:
        mode = resolve_preprocessing(preprocessing, spec, loaded.source)

    inputs = keras.Input(shape=shape, name="image")
    from . import _keras_compat  # noqa: F401  (registers the classes a saved model of it needs)
    from .preprocessing import Preprocess

    x = Preprocess(mode, name="preprocess")(inputs)
    x = base(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    activation = "softmax" if num_labels is None else "sigmoid"
    outputs = keras.layers.Dense(num_classes, activation=activation, dtype="float32", name="predictions")(x)
    source_tag = loaded.source or "random"
    model = keras.Model(inputs, outputs, name=name or f"{spec.name}_{source_tag}")
    model.radtransfer_info = BuildInfo(
        backbone=spec.name,
        weights=None if weights is None else str(weights),
        weights_source=loaded.source,
        weights_path=None if loaded.path is None else str(loaded.path.resolve()),
        weights_sha256=loaded.sha256,
        preprocessing=mode,
        num_classes=num_classes,
        input_shape=shape,
        dropout=float(dropout),
    )
    return model


def _backbone_with_weights(spec, weights, weights_dir, weights_sha256, shape, preprocessing="auto"):
    """The nested backbone with its weights loaded, and where they came from (``LoadedWeights``)."""
    if spec.foundation:
        from .foundation import build_foundation_backbone  # keras-hub (an optional extra): imported when used

        return build_foundation_backbone(spec, weights, weights_dir, shape, weights_sha256, preprocessing)
    resolved = resolve_weights(spec, weights, weights_dir)
    digest = None
    if resolved.path is not None and weights_sha256:
        digest = check_sha256(resolved.path, weights_sha256)
    base = spec.build((shape[0], shape[1], 3), name="backbone")
    if resolved.path is not None:
        load_backbone_weights(base, resolved.path, spec)
        digest = digest or sha256sum(resolved.path)
    return base, LoadedWeights(resolved.source, resolved.path, digest, None)


def _check_num_labels(num_labels, num_classes) -> int:
    if num_classes is not None:
        raise ValueError(
            "Pass num_classes= (one class per image, softmax) or num_labels= (several labels per image, sigmoids), "
            f"not both. Received: num_classes={num_classes!r}, num_labels={num_labels!r}"
        )
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"Expected num_labels to be a positive integer. Received: num_labels={num_labels!r}")
    return num_labels


def is_multi_label(model) -> bool:
    """Whether ``model`` has a multi-label head (``build_model(..., num_labels=K)``: a "predictions" layer of
    sigmoids), read from the layer itself, so a model loaded from its ``.keras`` file answers the same."""
    try:
        head = model.get_layer("predictions")
    except (ValueError, AttributeError):
        return False
    return getattr(getattr(head, "activation", None), "__name__", "") == "sigmoid"


def get_backbone_model(model: keras.Model) -> keras.Model:
    """Returns the nested "backbone" model of a model made by build_model."""

    try:
        return model.get_layer("backbone")
    except ValueError:
        raise ValueError(
            f"Expected a model made by radtransfer.build_model, with a nested layer named 'backbone'. "
            f"Received a model whose layers are {[layer.name for layer in model.layers]}."
        ) from None


def init_head(model: keras.Model, seed: int) -> None:
    """Re-initialises the "predictions" layer from ``seed`` (Glorot-uniform kernel, zero bias), so that two
    models (e.g. RadImageNet and ImageNet runs of one grid scenario) start from the same head. Drawn with
    NumPy, so the head is the same on every Keras backend (Keras's seeded initialisers are not)."""
    import keras
    import numpy as np

    head = model.get_layer("predictions")
    fan_in, fan_out = (int(v) for v in head.kernel.shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    kernel = np.random.default_rng(int(seed)).uniform(-limit, limit, (fan_in, fan_out)).astype("float32")
    head.kernel.assign(keras.ops.cast(kernel, head.kernel.dtype))
    head.bias.assign(np.zeros(tuple(head.bias.shape), dtype="float32"))
