"""Applying a trained model to new, unlabelled images, read exactly as its training images were read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.adapters import for_prediction, read_in_order
from ..data.decode import ReadSettings
from ..data.failures import check_images, readable_pipeline_errors
from ..models.classifier import is_multi_label
from ..models.trained import probabilities_of, temperature_of
from ..stats.temperature import scale_threshold
from ..training.run_folder import load_trained
from ..utils.progress import progress
from .gradcam import gradcam, performance_title, run_test_metrics, save_overlays, unique_names


def predict(
    model_or_run_dir,
    images,
    *,
    batch_size: int = 32,
    image_col: str = "path",
    patient_col: str | None = None,
    gradcam_dir=None,
    layer=None,
    on_bad: str = "raise",
    note=None,
):
    """Class probabilities and the predicted class of new images, read exactly as in training.

    The image size, interpolation, antialiasing, 16-bit mapping, DICOM window and frame policy of the
    model's training data travel inside ``best.keras`` (and the run folder), so no flags are needed to
    match training.

    Args:
        model_or_run_dir: a run folder of ``fine_tune`` / ``radtransfer train``, a ``.keras`` file, or a
            model returned by ``fine_tune`` / ``load_trained``.
        images: an image file, a folder (searched recursively; DICOM series in instance order), a CSV
            manifest, a list of these, or an ImageSet.
        batch_size: images per batch.
        image_col, patient_col: the CSV columns of image paths and (optional) patient ids.
        gradcam_dir: if given, a Grad-CAM overlay of the predicted class is written there for each image.
        layer: the Grad-CAM layer (default: the backbone's last convolutional output).
        on_bad: "raise" (default: unreadable files stop the call, all listed, before any prediction) or
            "skip" (they keep their row, with empty probabilities and the reason in ``error``).
        note: called with a line as each step begins (loading the model, reading and checking the images,
            predicting), e.g. ``print``; the command prints them on stderr. None: silent.

    Returns:
        A pandas DataFrame with one row per input image, in the order given: ``path``, ``patient_id`` (when
        known), one probability column per class (scaled by the model's temperature when ``calibrate`` fitted
        one), ``predicted`` (the class name) and, for two classes with a validation-chosen threshold,
        ``positive_score`` and the threshold used (where it lies on the scaled probabilities: a temperature
        changes no decision); with on_bad="skip", ``error`` (empty for images that were read). ``attrs`` holds
        the read settings, the class names, the threshold, ``threshold_unscaled`` and ``temperature``.

        A multi-label model: ``p_<label>`` (its sigmoid) and ``<label>`` (1 when ``p_<label>`` ≥ the label's
        validation threshold, else 0; empty for an unread image) per label, and ``predicted`` (the labels called,
        joined by "|"); ``attrs["thresholds"]`` {label: threshold (0.5 for a label that had none)}. Grad-CAM
        overlays explain each image's highest-scoring label.

    Raises:
        BadImagesError: unreadable files (all listed, before any prediction).
        RadtransferError: no model in the run folder, or no images found.
    """
    import pandas as pd

    note = note or (lambda line: None)
    if isinstance(model_or_run_dir, (str, Path)):
        note(f"loading the model from {model_or_run_dir}")
        model = load_trained(model_or_run_dir)
    else:
        model = model_or_run_dir
    image_set, names = for_prediction(images, image_col=image_col, patient_col=patient_col)
    read = ReadSettings.of_model(model)
    note(f"reading and checking {len(names)} image(s)")
    readable, bad = check_images(image_set, on_bad, frame=read.frame)
    dataset = read_in_order(readable, batch_size, read)
    # One row per input: the images read take their predictions in order, the others stay empty.
    reasons = dict(bad)
    read_rows = np.array([name not in reasons for name in names], dtype=bool)
    kept = [name for name, ok in zip(names, read_rows) if ok]
    overlay_names = unique_names(kept) if gradcam_dir is not None else None
    performance = None
    if gradcam_dir is not None:  # each overlay's title gives the model's test performance, or says it is unknown
        run = model_or_run_dir if isinstance(model_or_run_dir, (str, Path)) else None
        performance = performance_title(None if run is None else run_test_metrics(run))[0]
    num_classes = int(model.output_shape[-1])
    class_names = list(getattr(model, "radtransfer_class_names", None) or [str(i) for i in range(num_classes)])
    threshold = getattr(model, "radtransfer_threshold", None) if num_classes == 2 else None
    positive = int(getattr(model, "radtransfer_positive_class", None) or 1)
    temperature = temperature_of(model)

    def decide(raw):
        # On the raw outputs, where the threshold was chosen: a temperature changes no decision.
        if threshold is None:
            return raw.argmax(axis=1)
        return np.where(raw[:, positive] >= threshold, positive, 1 - positive)

    raw_batches, overlays = [], []
    with readable_pipeline_errors(dataset):
        batches = -(-len(readable) // batch_size)
        note(
            f"predicting {len(readable)} image(s) in {batches} batch(es) of up to {batch_size}"
            + (" (the first builds the model's graph)" if batches else "")
        )
        for images_batch, _ in progress(dataset, total=batches, desc="predicting", unit="batch", min_items=4):
            images_batch = np.asarray(images_batch)  # any backend takes NumPy; JAX refuses TF tensors
            batch = np.asarray(model.predict_on_batch(images_batch), dtype=np.float64)
            if gradcam_dir is not None:
                done = sum(len(p) for p in raw_batches)
                named = overlay_names[done : done + len(batch)]
                overlays += _overlays(
                    model, images_batch, batch, decide(batch), class_names, layer, gradcam_dir, named, performance
                )
            raw_batches.append(batch)
    raw = np.concatenate(raw_batches)
    all_probabilities = np.full((len(names), num_classes), np.nan)
    all_probabilities[read_rows] = probabilities_of(model, raw)
    frame = pd.DataFrame({"path": names})
    if image_set.patient_ids is not None:
        frame["patient_id"] = list(image_set.patient_ids)
    for index, name in enumerate(class_names):
        frame[f"p_{name}"] = all_probabilities[:, index]
    scaled = threshold if temperature is None or threshold is None else scale_threshold(threshold, temperature)
    if threshold is not None:
        frame["positive_score"] = all_probabilities[:, positive]
        frame["threshold"] = scaled
    frame["predicted"] = None
    frame.loc[read_rows, "predicted"] = [class_names[i] for i in decide(raw)]
    if gradcam_dir is not None:
        frame["gradcam"] = None
        frame.loc[read_rows, "gradcam"] = overlays
    if on_bad == "skip":
        frame["error"] = [reasons.get(name, "") for name in names]
    frame.attrs.update(
        {
            "class_names": class_names,
            "threshold": scaled,
            "threshold_unscaled": threshold,
            "temperature": temperature,
            "read_settings": read.dataset_kwargs(),
        }
    )
    return _label_calls(frame, model, raw, read_rows, class_names) if is_multi_label(model) else frame


def _label_calls(frame, model, raw, read_rows, class_names):
    """``frame`` with a multi-label model's calls: per label a 0/1 column at its validation threshold (0.5 without
    one), and the labels called joined by "|" as ``predicted``."""
    stored = getattr(model, "radtransfer_thresholds", None) or {}
    thresholds = np.array([stored.get(k, 0.5) for k in range(len(class_names))])
    calls = raw >= thresholds
    for index, name in enumerate(class_names):
        frame[name] = None
        frame.loc[read_rows, name] = calls[:, index].astype(int)
    frame.loc[read_rows, "predicted"] = ["|".join(np.asarray(class_names)[row]) for row in calls]
    frame.attrs["thresholds"] = dict(zip(class_names, thresholds.tolist()))
    return frame


def _overlays(model, images, raw, predicted, class_names, layer, out_dir, names, performance):
    probabilities = probabilities_of(model, raw)
    maps = gradcam(model, images, layer=layer, class_index=[int(c) for c in predicted])
    titles = [f"{class_names[c]} ({p[c]:.2f})\n{performance}" for p, c in zip(probabilities, predicted)]
    return save_overlays(images, maps, out_dir, names=names, titles=titles)
