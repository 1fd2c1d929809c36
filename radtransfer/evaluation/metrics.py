"""evaluate: honest metrics for a trained classifier (scikit-learn for ROC AUC, scipy for the bootstrap).

The reference reported Keras's AUC metric on the two-column softmax, which flattens both columns; here
a two-class AUC is the positive class's ROC AUC, and more classes get the macro one-vs-rest AUC. The
interval resamples patients when patient ids are known. The operating point (threshold) is never chosen
on the data it is scored on: it comes from the validation set.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

from ..data.adapters import for_evaluation
from ..data.decode import ReadSettings
from ..errors import ClassMismatchError
from ..models.classifier import is_multi_label
from ..models.trained import temperature_of
from ..stats.auc import auc_score, bootstrap_auc_ci
from ..stats.bootstrap import small_sample_note, units_per_class
from ..stats.calibration import brier_score, expected_calibration_error
from ..stats.temperature import apply_temperature, scale_threshold
from ..stats.thresholds import youden_threshold
from ..training.thresholds import predict_with_labels
from .external import check_disjoint, check_site, operating_point_intervals, recalibration
from .levels import Aggregation, Predictions, aggregation_of, to_units
from .multilabel import evaluate_multilabel


def model_read_kwargs(model) -> dict:
    """``make_dataset`` keywords that read images as the model's training did: ``{"settings":
    ReadSettings.of_model(model)}`` (where a model's read settings are decided)."""
    return {"settings": ReadSettings.of_model(model)}


def _resolve_positive(positive_class, class_names, num_classes):
    if num_classes != 2 and positive_class is None:
        return None
    if positive_class is None:
        return 1
    if isinstance(positive_class, str):
        if positive_class not in class_names:
            raise ValueError(f"positive_class {positive_class!r} is not one of {class_names}.")
        return class_names.index(positive_class)
    if not 0 <= int(positive_class) < num_classes:
        raise ValueError(f"positive_class {positive_class!r} is not a class index in [0, {num_classes}).")
    return int(positive_class)


@dataclasses.dataclass(frozen=True)
class OperatingThreshold:
    """The threshold a two-class operating point is taken at.

    Attributes:
        value: the probability of ``threshold_class`` from which an image is called that class (chosen beforehand,
            e.g. on validation data), on the probabilities as given; None: 0.5.
        source: where it came from ("validation", "given", "local"); recorded as the operating point's
            ``chosen_on`` (None: "default" without a value, else "given").
        threshold_class: the class whose probability ``value`` applies to (default: the positive class). For the
            other class, an image is called positive when it is not called ``threshold_class``.
    """

    value: float | None = None
    source: str | None = None
    threshold_class: int | str | None = None


_THRESHOLD_KEYWORDS = {"threshold_source": "source", "threshold_class": "threshold_class"}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What ``evaluate`` needs to know of a dataset that does not bring it, and how an ImageSet is read.

    Attributes:
        class_names: names of the classes (taken from an ImageSet when given one).
        patient_ids: one id per image, for a dataset (an ImageSet brings its own); the interval then resamples
            patients, not images.
        batch_size: batch size when the dataset is an ImageSet.
        exam_ids: one exam id per image, for a dataset (an ImageSet brings its own, ``ImageSet.exam_ids``), for
            ``level="exam"``.
    """

    class_names: list | tuple | None = None
    patient_ids: list | tuple | None = None
    batch_size: int = 32
    exam_ids: list | tuple | None = None


_DATASET_KEYWORDS = {name: name for name in ("class_names", "patient_ids", "batch_size", "exam_ids")}


def metrics_from_predictions(
    y_true,
    probabilities,
    class_names=None,
    positive_class=None,
    bootstrap: int = 1000,
    seed: int = 0,
    patient_ids=None,
    threshold=None,
    *,
    temperature=None,
    **threshold_keywords,
) -> dict:
    """All of evaluate()'s metrics from labels and predicted probabilities.

    Args:
        y_true: integer labels per image.
        probabilities: (images, classes) probabilities: the model's softmax outputs.
        class_names: the classes' names (default "0", "1", ...).
        positive_class: two classes: the class whose AUC, sensitivity and specificity are reported (default 1).
        bootstrap: resamples of the AUC's interval (0: none).
        seed: the bootstrap's seed.
        patient_ids: one id per image; the AUC interval then resamples patients.
        threshold: two classes: an ``OperatingThreshold``, or its value alone (a probability, on ``probabilities``
            as given; None: 0.5). ``threshold_source=`` and ``threshold_class=`` keywords set its other fields, as
            they did when they were parameters of their own.
        temperature: a temperature T to report the probabilities at: every figure is of softmax(log p / T)
            (two classes: the AUC is unchanged; more: one-vs-rest AUCs may move a little), while the threshold
            stays applied to ``probabilities`` as given, where it was chosen, so the decisions are the same; the
            operating point reports the threshold on the scaled probabilities and ``threshold_unscaled``.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

    threshold = _operating_threshold_of(threshold, threshold_keywords)
    y_true, raw, class_names, positive_class, missing = _checked_predictions(
        y_true, probabilities, class_names, positive_class, patient_ids
    )
    num_classes = raw.shape[1]
    probabilities = raw if temperature is None else apply_temperature(raw, temperature)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(y_true, predicted, labels=list(range(num_classes)))
    result = {
        "n": int(len(y_true)),
        "n_patients": int(len(set(map(str, patient_ids)))) if patient_ids is not None else None,
        "class_names": class_names,
        "missing_classes": missing,
        "auc": auc_score(y_true, probabilities, positive_class if positive_class is not None else 1),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, predicted)),
        "confusion_matrix": matrix.tolist(),
    }
    if num_classes == 2:
        result["positive_class"] = class_names[positive_class]
    result["temperature"] = None if temperature is None else float(temperature)
    result["brier"] = brier_score(y_true, probabilities)
    result["ece"], bins = expected_calibration_error(y_true, probabilities)
    result["calibration_bins"] = [dataclasses.asdict(b) for b in bins]
    result.update(_per_class(y_true, probabilities, matrix, class_names))
    if num_classes == 2:
        result["operating_point"] = _operating_point(
            y_true,
            raw,
            class_names,
            positive_class,
            threshold.value,
            threshold.source,
            threshold.threshold_class,
            temperature,
        )
    interval_class = positive_class if positive_class is not None else 1
    result.update(_auc_interval(y_true, probabilities, interval_class, patient_ids, bootstrap, seed, result["auc"]))
    result["predictions"] = {
        "y_true": y_true.tolist(),
        "probabilities": probabilities.tolist(),
        "patient_ids": None if patient_ids is None else [str(p) for p in patient_ids],
    }
    return result


def metrics_at_level(
    predictions: Predictions,
    aggregation: Aggregation,
    *,
    val: Predictions | None = None,
    threshold=None,
    temperature=None,
    **metrics_keywords,
) -> dict:
    """``metrics_from_predictions``' metrics over patients or exams: each unit's images' probabilities aggregated.

    The probabilities aggregated are those reported (softmax(log p / T) with a ``temperature``). Two classes: the
    operating threshold is chosen on ``val`` at the same level and aggregate (Youden's J over its units), unless one
    is given (``threshold_source="given"``); a threshold chosen on validation images (``threshold_source=
    "validation"``) without ``val`` is applied as it is, with a warning and ``threshold_level`` "image".

    Args:
        predictions: the test set's labels, probabilities, patient ids and (exam level) exam ids, per image.
        aggregation: the level ("patient" or "exam"; "image" gives ``metrics_from_predictions``' own result) and
            the aggregate ("mean", "max", "noisy_or").
        val: the validation set's, to choose the threshold on.
        threshold: an ``OperatingThreshold`` (or its value) on the units' (reported, aggregated) probabilities.
        temperature: the model's temperature, applied to every image's probabilities before they are aggregated.
        **metrics_keywords: ``class_names``, ``positive_class``, ``bootstrap``, ``seed`` of
            ``metrics_from_predictions``.

    Returns:
        ``metrics_from_predictions``' dict over the units (``n``: images; the interval resamples patients, each with
        all their exams; without patient ids, exams), with ``level``, ``aggregate``, ``n_units``,
        ``threshold_level`` (where the threshold was chosen: the level, "image", or None for a given one or 0.5)
        and, in ``predictions``, ``exam_ids`` and ``n_slices`` per unit.

    Raises:
        ValueError: as ``levels.to_units``: no ids for the level, a unit whose images disagree on the label,
            "max"/"noisy_or" with more than two classes.
    """
    threshold = threshold if isinstance(threshold, OperatingThreshold) else OperatingThreshold(threshold)
    if aggregation.level == "image":
        return metrics_from_predictions(
            predictions.y_true,
            predictions.probabilities,
            **metrics_keywords,
            patient_ids=predictions.patient_ids,
            threshold=threshold,
            temperature=temperature,
        )
    scaled = _reported(predictions, temperature)
    num_classes = scaled.probabilities.shape[1]
    class_names = metrics_keywords.get("class_names")
    positive = _resolve_positive(metrics_keywords.get("positive_class"), class_names or ["0", "1"], num_classes)
    units = to_units(scaled, aggregation, positive or 0, class_names)
    threshold, threshold_level = _unit_threshold(threshold, val, aggregation, temperature, positive, class_names)
    result = metrics_from_predictions(
        units.y_true, units.probabilities, **metrics_keywords, patient_ids=units.patient_ids, threshold=threshold
    )
    result.update(temperature=None if temperature is None else float(temperature), n=int(len(scaled.y_true)))
    if units.patient_ids is None and result["auc_ci_unit"] == "image":  # exams without patients: exams resampled
        result["auc_ci_unit"] = "exam"
        result["auc_ci_note"] = result["auc_ci_note"] and result["auc_ci_note"].replace("image", "exam")
    result.update(
        level=aggregation.level, aggregate=aggregation.aggregate, n_units=int(len(units.y_true)), threshold_level=None
    )
    if num_classes == 2:
        result["threshold_level"] = threshold_level
    result["predictions"]["exam_ids"] = None if units.exam_ids is None else [str(e) for e in units.exam_ids]
    result["predictions"]["n_slices"] = units.n_slices.tolist()
    return result


def _reported(predictions: Predictions, temperature) -> Predictions:
    """``predictions`` with the probabilities the model reports (at its temperature)."""
    if temperature is None:
        return dataclasses.replace(predictions, probabilities=np.asarray(predictions.probabilities, dtype=np.float64))
    return dataclasses.replace(predictions, probabilities=apply_temperature(predictions.probabilities, temperature))


def _unit_threshold(threshold, val, aggregation, temperature, positive, class_names):
    """(the threshold on the units' probabilities, the level it was chosen at): chosen on ``val``'s units at the
    same level and aggregate, unless given; an image-level one (chosen on validation images) is kept, with a
    warning."""
    if positive is None:  # more than two classes: no operating point
        return threshold, None
    if val is not None and threshold.source != "given":
        units = to_units(_reported(val, temperature), aggregation, positive, class_names)
        value = youden_threshold(units.y_true == positive, units.probabilities[:, positive])
        return OperatingThreshold(value, "validation"), aggregation.level
    if threshold.value is not None and threshold.source == "validation":
        warnings.warn(
            f"The operating threshold was chosen on validation images, not {aggregation.level}s: its sensitivity and "
            f"specificity at level={aggregation.level!r} are at an image-level threshold. Give val= (command line: "
            f"--val-data) to choose it on validation {aggregation.level}s.",
            stacklevel=3,
        )
        return threshold, "image"
    return threshold, None


def _operating_threshold_of(threshold, keywords: dict) -> OperatingThreshold:
    """``metrics_from_predictions``' threshold as an ``OperatingThreshold``: given whole, or its value with the
    ``threshold_source=``/``threshold_class=`` keywords (a TypeError names any other keyword)."""
    if not isinstance(threshold, OperatingThreshold):
        threshold = OperatingThreshold(threshold)
    return _with_keywords(threshold, keywords, _THRESHOLD_KEYWORDS, "metrics_from_predictions")


def _with_keywords(settings, keywords: dict, fields: dict, function: str):
    """``settings`` (a frozen dataclass) with the fields that the keywords of before (``fields``: keyword → field)
    set; an unknown keyword is refused in one line, as Python refuses one."""
    unknown = sorted(set(keywords) - set(fields))
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")
    return dataclasses.replace(settings, **{fields[k]: v for k, v in keywords.items()})


def _checked_predictions(y_true, probabilities, class_names, positive_class, patient_ids):
    """(labels, probabilities, class names, the positive class's index, names of the classes absent from the
    labels), or a one-line error for names that do not match the outputs, patient ids that do not match the images,
    an unknown positive class, predictions that are not finite, or labels of one class; a warning names absent
    classes."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_classes = probabilities.shape[1]
    class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ClassMismatchError(
            f"{len(class_names)} class names {class_names} for a model with {num_classes} outputs."
        )
    if patient_ids is not None and len(patient_ids) != len(y_true):
        raise ValueError(f"patient_ids has {len(patient_ids)} entries for {len(y_true)} images.")
    positive_class = _resolve_positive(positive_class, class_names, num_classes)
    bad = ~np.isfinite(probabilities).all(axis=1)
    if bad.any():
        raise ValueError(
            f"The model's predictions are NaN or infinite for {int(bad.sum())} of {len(y_true)} images: "
            "its weights have diverged. Evaluate the best checkpoint of a run that trained normally "
            "(e.g. with a lower learning rate)."
        )
    present = np.unique(y_true)
    if len(present) < 2:
        raise ValueError(
            f"AUC needs at least two classes among the labels; only "
            f"{[class_names[i] for i in present]} present in {len(y_true)} images."
        )
    missing = [class_names[c] for c in range(num_classes) if c not in present]
    if missing:
        warnings.warn(
            f"The evaluation set has no images of class(es) {missing}: the macro AUC is undefined "
            "(reported as NaN) and per-class figures for them are NaN.",
            stacklevel=4,  # the caller of metrics_from_predictions' caller, as before this helper
        )
    return y_true, probabilities, class_names, positive_class, missing


def _auc_interval(y_true, probabilities, positive_class, patient_ids, bootstrap, seed, auc) -> dict:
    """The AUC interval's fields of the metrics: the bootstrap interval with its unit, method, units, resamples,
    seed and small-sample note, or none (no resamples, or an AUC that is not finite)."""
    if not (bootstrap and math.isfinite(auc)):
        return {
            "auc_ci": (math.nan, math.nan),
            "auc_ci_unit": None,
            "auc_ci_method": None,
            "auc_ci_units": None,
            "auc_ci_resamples": 0,
            "auc_ci_seed": seed,
            "auc_ci_note": None,
        }
    ci = bootstrap_auc_ci(y_true, probabilities, positive_class, groups=patient_ids, n=bootstrap, seed=seed)
    smallest = min(units_per_class(y_true, patient_ids).values())
    return {
        "auc_ci": (ci["low"], ci["high"]),
        "auc_ci_unit": ci["unit"],
        "auc_ci_method": ci["method"],
        "auc_ci_units": ci["n_units"],
        "auc_ci_resamples": ci["resamples"] and bootstrap,
        "auc_ci_seed": seed,
        # Under the minimum-units rule (stats.too_few) the note is why there is no interval.
        "auc_ci_note": ci["no_interval"] or small_sample_note(smallest, ci["unit"], where="in the smallest class"),
    }


def _per_class(y_true, probabilities, matrix, class_names) -> dict:
    """Sensitivity and specificity of each class (arg-max decisions, from the confusion matrix) and its
    one-vs-rest ROC AUC (NaN for a class absent from the labels)."""
    from sklearn.metrics import roc_auc_score

    sensitivity, specificity, per_class_auc = {}, {}, {}
    for c, name in enumerate(class_names):
        tp = matrix[c, c]
        fn = matrix[c].sum() - tp
        fp = matrix[:, c].sum() - tp
        tn = matrix.sum() - tp - fn - fp
        sensitivity[name] = float(tp / (tp + fn)) if tp + fn else math.nan
        specificity[name] = float(tn / (tn + fp)) if tn + fp else math.nan
        positives = y_true == c
        per_class_auc[name] = (
            float(roc_auc_score(positives, probabilities[:, c])) if 0 < positives.sum() < len(y_true) else math.nan
        )
    return {"sensitivity": sensitivity, "specificity": specificity, "per_class_auc": per_class_auc}


def _operating_point(
    y_true, probabilities, class_names, positive_class, threshold, source, threshold_class, temperature=None
) -> dict:
    """Two classes: sensitivity and specificity of the positive class at a threshold on one class's probability
    (the positive class's, or the other's, whose calls it converts exactly). The decisions are taken on
    ``probabilities`` as given; with a temperature the threshold is also reported where it lies on the scaled
    probabilities (the same decisions)."""
    chosen = 0.5 if threshold is None else float(threshold)
    on = positive_class if threshold_class is None else _resolve_positive(threshold_class, class_names, 2)
    called = probabilities[:, on] >= chosen
    if on != positive_class:
        called = ~called
    truth = y_true == positive_class
    return {
        "threshold": chosen if temperature is None else scale_threshold(chosen, temperature),
        "threshold_unscaled": chosen,
        "threshold_class": class_names[on],
        "chosen_on": source or ("default" if threshold is None else "given"),
        "sensitivity": float((called & truth).sum() / truth.sum()) if truth.any() else math.nan,
        "specificity": float((~called & ~truth).sum() / (~truth).sum()) if (~truth).any() else math.nan,
    }


def describe_interval(metrics: dict) -> str:
    """The AUC's interval with how it was made and on how many units, e.g. "95% CI 0.940–0.971: BCa bootstrap
    over 8 patients, 1000 resamples, seed 0", so two intervals of one model can be told apart and a small n is
    seen; or why there is none."""
    low, high = (math.nan if v is None else v for v in (metrics.get("auc_ci") or (None, None)))  # null in JSON
    units, unit = metrics.get("auc_ci_units"), metrics.get("auc_ci_unit") or "image"
    if not (math.isfinite(low) and math.isfinite(high)):
        if str(metrics.get("auc_ci_note") or "").startswith("no interval"):  # the minimum-units rule's reason
            return metrics["auc_ci_note"]
        count = metrics.get("n_patients") or metrics.get("n")
        return (
            f"no interval ({count} test {'patients' if metrics.get('n_patients') else 'images'}: too few to resample)"
        )
    plural = unit if units == 1 else f"{unit}s"
    text = (
        f"95% CI {low:.3f}–{high:.3f}: {metrics.get('auc_ci_method')} bootstrap over {units} {plural}, "
        f"{metrics.get('auc_ci_resamples')} resamples, seed {metrics.get('auc_ci_seed')}"
    )
    note = metrics["auc_ci_note"] if "auc_ci_note" in metrics else _legacy_note(unit, units)
    return f"{text} ({note})" if note else text


def _legacy_note(unit, units) -> str | None:
    """The small-sample note of metrics written before ``auc_ci_note`` existed (under 20 patients in all)."""
    if unit == "patient" and units is not None and units < 20:
        return "with under 20 patients such intervals cover less than 95%: docs/training.md"
    return None


def class_mismatch(trained, class_names) -> str | None:
    """What differs between the classes a model was trained on and the data's (None: the same, or unknown), in
    words: the classes only one side has, or the same classes in another order."""
    if not trained or class_names is None:
        return None
    trained, class_names = [str(c) for c in trained], [str(c) for c in class_names]
    if trained == class_names:
        return None
    only_model = [c for c in trained if c not in class_names]
    only_data = [c for c in class_names if c not in trained]
    detail = (
        (f" Classes only the model knows: {only_model}." if only_model else "")
        + (f" Classes only the data has: {only_data}." if only_data else "")
        + (" Same classes in another order." if not only_model and not only_data else "")
    )
    if only_data:
        fix = f" Leave out the images of {only_data}; read the rest with data.from_csv(..., class_names={trained})."
    else:  # the model's classes, in another order or some without images: read in the model's order
        fix = f" Read the data in the model's class order: data.from_csv(..., class_names={trained})."
    return f"The model was trained on classes {trained} but the data has {class_names}.{detail}{fix}"


def check_classes(model, class_names) -> None:
    """Raises ClassMismatchError when the data's classes differ from the model's (outputs, and the names
    it was trained with when known)."""
    outputs = int(model.output_shape[-1])
    if class_names is None:
        return
    class_names = [str(c) for c in class_names]
    mismatch = class_mismatch(getattr(model, "radtransfer_class_names", None), class_names)
    if mismatch:
        raise ClassMismatchError(mismatch)
    if len(class_names) != outputs:
        raise ClassMismatchError(
            f"The data has {len(class_names)} classes {class_names} but the model predicts "
            f"{outputs}. Evaluate on data with the training classes."
        )


def _operating_threshold(model, threshold, positive_class, class_names, val, batch_size):
    """(threshold, where it was chosen, the class whose probability it is on) for a two-class model, on its raw
    (unscaled) probabilities: the one given (on the probabilities it reports, so mapped back through its
    temperature), else the one fine_tune chose on validation for the positive class, else one chosen on ``val``."""
    if int(model.output_shape[-1]) != 2:
        return threshold, "given" if threshold is not None else None, None
    positive = _resolve_positive(positive_class, class_names or ["0", "1"], 2)
    stored = getattr(model, "radtransfer_thresholds", None) or {}
    if threshold is not None:
        temperature = temperature_of(model)
        return (threshold if temperature is None else scale_threshold(threshold, 1 / temperature)), "given", None
    if positive in stored:
        return stored[positive], "validation", None
    if getattr(model, "radtransfer_threshold", None) is not None:
        # A model saved with one threshold (on class 1's probability, radtransfer ≤ 0.1): applied to that
        # class's probability, and converted for the other.
        return model.radtransfer_threshold, "validation", getattr(model, "radtransfer_positive_class", None) or 1
    if val is not None:
        y_val, p_val = raw_predictions(model, val, batch_size)[:2]
        return youden_threshold(y_val == positive, p_val[:, positive]), "validation", None
    return None, None, None


def raw_predictions(model, dataset, batch_size, class_names=None, patient_ids=None):
    """A labelled dataset's predictions before any temperature, in the set's order, after checking its classes
    against the model's.

    Args:
        model: a trained Keras model with a softmax output.
        dataset: what ``evaluate`` takes.
        batch_size: batch size for an ImageSet.
        class_names, patient_ids: for a dataset that does not bring its own.

    Returns:
        (y_true, raw softmax outputs, class names, patient ids, image paths): the last three None when unknown.

    Raises:
        ClassMismatchError: the data's classes differ from the model's, or are several labels per image.
    """
    if getattr(dataset, "multi_label", False):  # argmax of multi-hot rows would score a class no image has
        raise ClassMismatchError("The model gives one class per image (softmax); the data is multi-label (label_cols).")
    num_classes = int(model.output_shape[-1])
    data = for_evaluation(
        dataset,
        num_classes=num_classes,
        input_size=model.input_shape[1:3],
        batch_size=batch_size,
        settings=ReadSettings.of_model(model),
        class_names=class_names,
        patient_ids=patient_ids,
    )
    check_classes(model, data.class_names)
    y_true, raw = data.in_set_order(*predict_with_labels(model, data.batches, scaled=False))
    if data.patient_ids is not None and len(data.patient_ids) != len(y_true):
        raise ValueError(f"patient_ids has {len(data.patient_ids)} entries but the dataset has {len(y_true)} images.")
    paths = getattr(dataset, "paths", None)
    return y_true, raw, data.class_names, data.patient_ids, None if paths is None else [str(p) for p in paths]


def evaluate(
    model,
    dataset,
    *,
    positive_class=None,
    bootstrap: int = 1000,
    seed: int = 0,
    threshold=None,
    val=None,
    site=None,
    recalibrate=None,
    dataset_info: DatasetInfo | None = None,
    **dataset_keywords,
) -> dict:
    """Evaluates a classifier on a test set, or (with ``site``) validates it externally; per image, or per patient
    or exam (``level=``).

    Args:
        model: a trained Keras model with a softmax output (from ``fine_tune`` or ``load_trained``, which
            carry the class names, the validation-chosen threshold and any temperature ``calibrate`` fitted).
        dataset: an ImageSet (read as the model's training images were read, when the model carries its
            read settings, else at its input size; no augmentation, no shuffling, no cache; its class names
            and patient ids are used), a ``tf.data.Dataset`` or ``keras.utils.PyDataset`` of (images, one-hot
            labels), or ``(images, labels)`` arrays at the model's input size (no TensorFlow needed).
        positive_class: for two classes, the class whose ROC AUC is reported (index or name; default 1).
        bootstrap: resamples for ``auc_ci`` (0 to skip).
        seed: the bootstrap's seed.
        threshold: two classes: the operating threshold on the positive class's probability (as the model
            reports it). Default: the one fine_tune chose on the validation set for the positive class
            (``model.radtransfer_thresholds``), else chosen on ``val`` if given, else 0.5.
        val: validation data (ImageSet or dataset) to choose the threshold on (Youden's J), when the model
            carries none.
        site: the name of an external site ``dataset`` comes from (letters, digits, ``_.-``): the result is then
            the external validation's, with both arms' operating points given patient-level intervals.
        recalibrate: with ``site``: a small labelled local set of that site (patients apart from ``dataset``'s)
            on which the temperature and (two classes) the threshold are refit.
        dataset_info: a ``DatasetInfo``: the class names and patient ids of a dataset that does not bring its own,
            and the batch size an ImageSet is read in (default: none, none, 32). Its fields are also taken as
            keywords of their own, as before: ``class_names=``, ``patient_ids=``, ``batch_size=`` (over
            ``dataset_info``'s).
        **dataset_keywords: besides those, the level (``level="image"|"patient"|"exam"``) and the aggregate of a
            unit's images' probabilities (``aggregate="mean"|"max"|"noisy_or"``), or both as
            ``aggregation=Aggregation(level, aggregate)`` (``evaluation.levels``). At patient or exam level (exam
            ids: ``data.from_csv(..., exam_col=)``, or ``exam_ids=``) every figure is over units (each unit's
            images aggregated: ``metrics_at_level``), the interval resamples patients with all their exams, and the
            threshold is chosen on ``val`` at the same level and aggregate; without ``val`` the model's image-level
            threshold is applied, with a warning and ``threshold_level`` "image". Not with ``site`` (yet).

    Returns:
        Without ``site``: a dict with ``auc`` (two classes: the positive class's ROC AUC; more: macro
        one-vs-rest), ``auc_ci`` (95% stratified BCa bootstrap), ``auc_ci_unit`` ("patient" or "image"),
        ``auc_ci_method``, ``auc_ci_note`` (the small-sample note when the smallest class has under 20 units, else
        None), ``accuracy``, ``balanced_accuracy``, ``sensitivity`` and ``specificity`` per class
        (arg-max decisions), ``operating_point`` (two classes: threshold, where it was chosen, sensitivity and
        specificity on this data), ``per_class_auc``, ``confusion_matrix`` (rows: true class), ``brier``, ``ece``
        and ``calibration_bins`` (of the probabilities the model reports: scaled by its temperature, if any;
        ``temperature``), ``missing_classes``, ``n``, ``n_patients`` and ``predictions`` (``y_true``,
        ``probabilities``, ``patient_ids``). At patient or exam level also ``level``, ``aggregate``, ``n_units``
        (``n``: images) and ``threshold_level``, the figures being over units (``metrics_at_level``).

        A multi-label model (``build_model(..., num_labels=K)``): ``evaluation.multilabel.multilabel_metrics``' dict
        (``per_label_auc``, macro ``auc`` and their intervals, per-label ``operating_points``), per image only.

        With ``site``: ``{"site", "development", "recalibrated", "recalibration"}``: ``development`` is the
        dict above at the model's own temperature and development threshold; ``recalibrated`` the same
        figures at the temperature and threshold refit on ``recalibrate`` (None without it), and
        ``recalibration`` those (``temperature``, ``threshold`` on the scaled probabilities,
        ``threshold_unscaled``, ``n``, ``n_patients``; None without it). Two classes: each arm's
        ``operating_point`` has ``sensitivity_ci`` and ``specificity_ci`` (same bootstrap and seed as the AUC's),
        with the positive and negative units they rest on (``sensitivity_ci_units``, ``specificity_ci_units``) and
        their small-sample notes (``sensitivity_ci_note``, ``specificity_ci_note``: under 20 units, or under 5 units'
        worth of the rarer outcome; else None).

    Raises:
        ClassMismatchError: the data's classes differ from the model's.
        ValueError: ``recalibrate`` without ``site``, or a local set sharing patients with ``dataset``; at patient or
            exam level, no ids for the level, a unit whose images disagree on the label, "max"/"noisy_or" with more
            than two classes, or ``site``.
        TypeError: a keyword ``evaluate`` does not take.
    """
    if dataset_info is not None and not isinstance(dataset_info, DatasetInfo):
        raise TypeError(f"dataset_info= takes a DatasetInfo, not {type(dataset_info).__name__}.")
    aggregation = aggregation_of(dataset_keywords)
    info = _with_keywords(dataset_info or DatasetInfo(), dataset_keywords, _DATASET_KEYWORDS, "evaluate")
    class_names, patient_ids, batch_size = info.class_names, info.patient_ids, info.batch_size
    if is_multi_label(model):  # per-label figures: evaluation.multilabel
        level = None if aggregation.level == "image" else aggregation.level
        refused = (("positive_class", positive_class), ("threshold", threshold), ("site", site), ("level", level))
        arm = dict(class_names=class_names, patient_ids=patient_ids, batch_size=batch_size, bootstrap=bootstrap)
        return evaluate_multilabel(model, dataset, seed=seed, val=val, unsupported=refused, **arm)
    if recalibrate is not None and site is None:
        raise ValueError("recalibrate= needs site= (the external site the local set comes from).")
    if aggregation.level != "image":
        if site is not None:
            raise ValueError(f"level={aggregation.level!r} is not available with site= yet: use level='image' there.")
        arm = dict(positive_class=positive_class, bootstrap=bootstrap, seed=seed)
        return _evaluate_units(model, dataset, aggregation, info, (threshold, val), arm)
    if site is not None:
        site = check_site(site)
    y_true, raw, data_classes, patient_ids, paths = raw_predictions(
        model, dataset, batch_size, class_names, patient_ids
    )
    class_names = data_classes or (list(getattr(model, "radtransfer_class_names", None) or []) or None)
    threshold, source, threshold_class = _operating_threshold(
        model, threshold, positive_class, class_names, val, batch_size
    )
    arm = dict(
        class_names=class_names,
        positive_class=positive_class,
        bootstrap=bootstrap,
        seed=seed,
        patient_ids=patient_ids,
    )
    development = metrics_from_predictions(
        y_true,
        raw,
        **arm,
        threshold=OperatingThreshold(threshold, source, threshold_class),
        temperature=temperature_of(model),
    )
    if site is None:
        return development
    operating_point_intervals(development, y_true, raw, patient_ids, n=bootstrap, seed=seed)
    result = {"site": site, "development": development, "recalibrated": None, "recalibration": None}
    if recalibrate is None:
        return result
    y_local, raw_local, _, local_patients, local_paths = raw_predictions(model, recalibrate, batch_size)
    check_disjoint(local_patients, patient_ids, local_paths, paths)
    positive = _resolve_positive(positive_class, class_names or [str(i) for i in range(raw.shape[1])], raw.shape[1])
    refit = recalibration(y_local, raw_local, positive, local_patients)
    recalibrated = metrics_from_predictions(
        y_true,
        raw,
        **arm,
        threshold=OperatingThreshold(refit.threshold, None if refit.threshold is None else "local"),
        temperature=refit.temperature,
    )
    operating_point_intervals(recalibrated, y_true, raw, patient_ids, n=bootstrap, seed=seed)
    summary = refit.to_dict()
    summary["threshold_unscaled"] = summary["threshold"]
    if refit.threshold is not None:
        summary["threshold"] = scale_threshold(refit.threshold, refit.temperature)
    result.update(recalibrated=recalibrated, recalibration=summary)
    return result


def _evaluate_units(model, dataset, aggregation, info, threshold_and_val, arm) -> dict:
    """``evaluate`` at patient or exam level: the test set's and (two classes) ``val``'s predictions, and the
    threshold the model carries (or the one given) on the probabilities it reports, to ``metrics_at_level``."""
    threshold, val = threshold_and_val
    y_true, raw, data_classes, patients, _ = raw_predictions(
        model, dataset, info.batch_size, info.class_names, info.patient_ids
    )
    class_names = data_classes or (list(getattr(model, "radtransfer_class_names", None) or []) or None)
    temperature = temperature_of(model)
    value, source, on = _operating_threshold(
        model, threshold, arm["positive_class"], class_names, None, info.batch_size
    )
    if source == "given":
        value = threshold  # on the probabilities as reported, where the units' are aggregated
    elif value is not None and temperature is not None:
        value = scale_threshold(value, temperature)
    validation = None
    if val is not None and int(model.output_shape[-1]) == 2:
        y_val, raw_val, _, val_patients, _ = raw_predictions(model, val, info.batch_size)
        validation = Predictions(y_val, raw_val, val_patients, getattr(val, "exam_ids", None))
    exams = info.exam_ids if info.exam_ids is not None else getattr(dataset, "exam_ids", None)
    return metrics_at_level(
        Predictions(y_true, raw, patients, exams),
        aggregation,
        val=validation,
        threshold=OperatingThreshold(value, source, on),
        temperature=temperature,
        class_names=class_names,
        **arm,
    )
