"""A trained model and what it needs to be used right: class names, the validation-chosen threshold, the
temperature it was calibrated with, and how it was built. Saved inside the ``.keras`` file (a ``radtransfer.json``
member of its zip), so the file alone is enough to score or apply the model.

Thresholds are stored, and decisions taken, on the model's own (unscaled) softmax outputs, where fine_tune chose
them; a temperature changes the probabilities reported, never a decision (``scale_threshold`` says where a
threshold lies on the scaled probabilities). ``probabilities_of`` is the one place a model's outputs become the
probabilities that are reported: every scoring path calls it."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np

from ..errors import RadtransferError
from ..stats.temperature import apply_temperature, check_temperature
from ..utils.io import dumps_strict, replace_atomic

METADATA = "radtransfer.json"
SCHEMA_VERSION = 1


def set_trained_info(
    model,
    class_names=None,
    threshold=None,
    positive_class=None,
    read_settings=None,
    thresholds=None,
    temperature=None,
    calibration=None,
) -> None:
    """Attaches the class names, operating thresholds, image reading settings and temperature to a model (read by
    ``evaluate`` and ``predict``).

    Args:
        class_names: the classes, in output order.
        threshold: the threshold on ``positive_class``'s (unscaled) probability (``predict`` applies it).
        positive_class: the class ``threshold`` is on.
        read_settings: how the training images were read (``data.ReadSettings.to_dict()``; read back, as the
            one place that decides a model's read settings, by ``data.ReadSettings.of_model(model)``).
        thresholds: {class index: threshold on that class's (unscaled) probability}, each chosen with that class as
            the positive one (``evaluate`` applies the one of the class it scores as positive).
        temperature: the temperature the model's probabilities are scaled with (None: none; see ``set_temperature``).
        calibration: how the temperature was fitted (``set_temperature``).
    """
    model.radtransfer_class_names = None if class_names is None else tuple(str(c) for c in class_names)
    model.radtransfer_threshold = None if threshold is None else float(threshold)
    model.radtransfer_positive_class = positive_class
    model.radtransfer_thresholds = None if thresholds is None else {int(c): float(t) for c, t in thresholds.items()}
    model.radtransfer_read_settings = None if read_settings is None else dict(read_settings)
    set_temperature(model, temperature, calibration)


def set_temperature(model, temperature, calibration: dict | None = None) -> None:
    """Attaches a temperature to a model: from then on ``evaluate``, ``predict`` and ``calibrate``'s callers get
    softmax(log p / T) (``probabilities_of``). Its thresholds stay on the unscaled probabilities, so no decision
    changes.

    Args:
        model: the model (a Keras model from fine_tune or load_trained).
        temperature: T > 0, or None to remove it.
        calibration: how it was fitted (method, temperature, nll_before, nll_after, ece_before, ece_after, n,
            n_patients, fitted_on), recorded with the model.
    """
    model.radtransfer_temperature = None if temperature is None else check_temperature(temperature)
    model.radtransfer_calibration = None if temperature is None or calibration is None else dict(calibration)


def temperature_of(model) -> float | None:
    """The temperature a model's probabilities are scaled with (None: none)."""
    return getattr(model, "radtransfer_temperature", None)


def probabilities_of(model, raw) -> np.ndarray:
    """The probabilities a trained model reports for its softmax outputs ``raw``: scaled by its temperature, if it
    has one (float64)."""
    raw = np.asarray(raw, dtype=np.float64)
    temperature = temperature_of(model)
    return raw if temperature is None else apply_temperature(raw, temperature)


def trained_info(model) -> dict:
    info = getattr(model, "radtransfer_info", None)
    return {
        "schema_version": SCHEMA_VERSION,
        "class_names": list(getattr(model, "radtransfer_class_names", None) or []) or None,
        "threshold": getattr(model, "radtransfer_threshold", None),
        "positive_class": getattr(model, "radtransfer_positive_class", None),
        "thresholds": {str(c): t for c, t in (getattr(model, "radtransfer_thresholds", None) or {}).items()} or None,
        "read_settings": getattr(model, "radtransfer_read_settings", None),
        "temperature": temperature_of(model),
        "calibration": getattr(model, "radtransfer_calibration", None),
        "build": info.to_dict() if info is not None else None,
    }


def save_trained(model, path, extra: dict | None = None) -> Path:
    """Saves ``model`` as a ``.keras`` file with its class names and threshold inside, atomically."""
    payload = trained_info(model)
    payload.update(extra or {})

    def write(tmp):
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA, dumps_strict(payload, indent=2))

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


def update_trained_info(path, updates: dict) -> None:
    """Rewrites the radtransfer metadata of a ``.keras`` file with ``updates`` merged in, atomically (a crash leaves
    the old file); the model's own members are copied unchanged.

    Raises:
        RadtransferError: ``path`` is not a .keras file.
    """
    payload = read_trained_info(path)
    payload.setdefault("schema_version", SCHEMA_VERSION)
    payload.update(updates)

    def write(tmp):
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as target:
            for item in source.infolist():
                if item.filename != METADATA:  # streamed: a model's weights may not fit twice in memory
                    large = item.file_size > zipfile.ZIP64_LIMIT
                    with source.open(item) as reading, target.open(item, "w", force_zip64=large) as writing:
                        shutil.copyfileobj(reading, writing, 1 << 20)
            target.writestr(METADATA, dumps_strict(payload, indent=2))

    replace_atomic(path, write)


def load_trained_file(path, fallback: dict | None = None):
    """Loads a trained model's ``.keras`` file with its class names, thresholds, read settings and build info
    attached. ``fallback`` gives what a file saved without them (by radtransfer 0.1) lacks: its run's record of
    ``class_names`` and ``read_settings``."""
    import keras

    from . import _keras_compat, layer_rates, preprocessing  # noqa: F401  (register the classes .keras files need)
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
        meta.get("temperature"),
        meta.get("calibration"),
    )
    if meta.get("build"):
        build = dict(meta["build"])
        build["input_shape"] = tuple(build["input_shape"])
        model.radtransfer_info = BuildInfo(**build)
    return model
