"""A trained model and what it needs to be used right: class names, the validation-chosen threshold,
and how it was built. Saved inside the ``.keras`` file (a ``radtransfer.json`` member of its zip), so the
file alone is enough to score or apply the model."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ..errors import RadtransferError

METADATA = "radtransfer.json"
SCHEMA_VERSION = 1


def set_trained_info(
    model, class_names=None, threshold=None, positive_class=None, read_settings=None, thresholds=None
) -> None:
    """Attaches the class names, operating thresholds and image reading settings to a model (read by
    ``evaluate`` and ``predict``).

    Args:
        threshold: the threshold on ``positive_class``'s probability (``predict`` applies it).
        thresholds: {class index: threshold on that class's probability}, each chosen with that class as the
            positive one (``evaluate`` applies the one of the class it scores as positive).
    """
    model.radtransfer_class_names = None if class_names is None else tuple(str(c) for c in class_names)
    model.radtransfer_threshold = None if threshold is None else float(threshold)
    model.radtransfer_positive_class = positive_class
    model.radtransfer_thresholds = None if thresholds is None else {int(c): float(t) for c, t in thresholds.items()}
    model.radtransfer_read_settings = None if read_settings is None else dict(read_settings)


def trained_info(model) -> dict:
    info = getattr(model, "radtransfer_info", None)
    return {
        "schema_version": SCHEMA_VERSION,
        "class_names": list(getattr(model, "radtransfer_class_names", None) or []) or None,
        "threshold": getattr(model, "radtransfer_threshold", None),
        "positive_class": getattr(model, "radtransfer_positive_class", None),
        "thresholds": {str(c): t for c, t in (getattr(model, "radtransfer_thresholds", None) or {}).items()} or None,
        "read_settings": getattr(model, "radtransfer_read_settings", None),
        "build": info.to_dict() if info is not None else None,
    }


def save_trained(model, path, extra: dict | None = None) -> Path:
    """Saves ``model`` as a ``.keras`` file with its class names and threshold inside, atomically."""
    from ..utils.io import replace_atomic

    payload = trained_info(model)
    payload.update(extra or {})

    def write(tmp):
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA, json.dumps(payload, indent=2, default=str))

    replace_atomic(path, write)
    return Path(path)


def read_trained_info(path) -> dict:
    """The radtransfer metadata of a ``.keras`` file ({} for a file saved without it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA not in archive.namelist():
                return {}
            return json.loads(archive.read(METADATA))
    except zipfile.BadZipFile:
        raise RadtransferError(f"'{path}' is not a .keras model file (not a zip archive).") from None


def load_trained_file(path, fallback: dict | None = None):
    """Loads a trained model's ``.keras`` file with its class names, thresholds, read settings and build info
    attached. ``fallback`` gives what a file saved without them (by radtransfer 0.1) lacks: its run's record of
    ``class_names`` and ``read_settings``."""
    import keras

    from . import _keras_compat, preprocessing  # noqa: F401  (register the classes .keras files need)
    from .classifier import BuildInfo

    model = keras.saving.load_model(path)
    meta = read_trained_info(path)
    for key, value in (fallback or {}).items():
        if not meta.get(key):
            meta[key] = value
    set_trained_info(
        model,
        meta.get("class_names"),
        meta.get("threshold"),
        meta.get("positive_class"),
        meta.get("read_settings"),
        meta.get("thresholds"),
    )
    if meta.get("build"):
        build = dict(meta["build"])
        build["input_shape"] = tuple(build["input_shape"])
        model.radtransfer_info = BuildInfo(**build)
    return model


# The fields of data.decode.ReadSettings: how image files become model inputs.
READ_SETTING_FIELDS = ("image_size", "interpolation", "antialias", "sixteen_bit", "dicom_window", "frame")
