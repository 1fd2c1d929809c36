"""A trained model and what it needs to be used right: class names, the validation-chosen threshold,
and how it was built. Saved inside the ``.keras`` file (a ``radtransfer.json`` member of its zip), so the
file alone is enough to score or apply the model."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras

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


def load_trained(path_or_run_dir):
    """Loads a trained model (a ``.keras`` file or a run folder holding ``best.keras``) with its class
    names, threshold and build info attached."""
    from . import _keras_compat  # noqa: F401  (registers the classes .keras files need)
    from .classifier import BuildInfo

    path = Path(path_or_run_dir)
    if path.is_dir():
        path = path / "best.keras"
    if not path.exists():
        raise RadtransferError(
            f"No trained model at '{path}'. Pass a run folder of fine_tune / "
            "'radtransfer train' (it holds best.keras) or a .keras file."
        )
    model = keras.saving.load_model(path)
    meta = read_trained_info(path)
    if not meta.get("class_names"):  # a model saved by radtransfer 0.1: the run's config has them
        config = path.parent / "config.json"
        if config.exists():
            meta["class_names"] = json.loads(config.read_text()).get("class_names")
    if not meta.get("read_settings"):  # saved before read settings travelled with the model
        meta["read_settings"] = run_read_settings(path.parent)
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


# The fields of data.pipeline.ReadSettings: how image files become model inputs.
READ_SETTING_FIELDS = ("image_size", "interpolation", "antialias", "sixteen_bit", "dicom_window", "frame")


def run_read_settings(run_dir) -> dict | None:
    """The read settings a run folder's config.json recorded for its training data (None if absent)."""
    config = Path(run_dir) / "config.json"
    if not config.exists():
        return None
    try:
        train = json.loads(config.read_text())["identity"]["data"]["train"] or {}
    except (KeyError, TypeError, ValueError):
        return None
    return {k: train[k] for k in READ_SETTING_FIELDS if k in train} if "image_size" in train else None
