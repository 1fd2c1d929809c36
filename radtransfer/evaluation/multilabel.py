"""evaluate for a multi-label model (``build_model(..., num_labels=K)``: K sigmoids, any number of labels per image):
per-label and macro ROC AUC with patient-level bootstrap intervals, and per-label operating points at the thresholds
fine_tune chose on validation data (Youden's J per label)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..data.adapters import for_evaluation
from ..data.decode import ReadSettings
from ..errors import ClassMismatchError
from ..stats.multilabel import label_auc_intervals, label_aucs, macro_auc_interval
from ..training.thresholds import label_thresholds, predict_with_labels


def multilabel_predictions(model, dataset, batch_size: int = 32, class_names=None, patient_ids=None):
    """A labelled dataset's (multi-hot labels, sigmoid outputs, label names, patient ids), in the set's order, after
    checking its labels against the model's.

    Raises:
        ClassMismatchError: the data's labels differ from the model's (names, order or count).
    """
    num_labels = int(model.output_shape[-1])
    data = for_evaluation(
        dataset,
        num_classes=num_labels,
        input_size=model.input_shape[1:3],
        batch_size=batch_size,
        settings=ReadSettings.of_model(model),
        class_names=class_names,
        patient_ids=patient_ids,
    )
    if getattr(dataset, "multi_label", True) is False:
        raise ClassMismatchError(
            "The model is multi-label but the data has one class per image: read it with from_csv(..., label_cols=)."
        )
    trained = list(getattr(model, "radtransfer_class_names", None) or [])
    names = [str(c) for c in (data.class_names or trained or range(num_labels))]
    if (trained and names != trained) or len(names) != num_labels:
        raise ClassMismatchError(
            f"The model was trained on labels {trained or num_labels} but the data has {names}: read the data with "
            f"from_csv(..., label_cols={trained or names})."
        )
    y_true, raw = data.in_set_order(*predict_with_labels(model, data.batches, scaled=False, multi_label=True))
    if not np.isfinite(raw).all():
        raise ValueError(
            "The model's predictions are NaN or infinite: its weights have diverged. Evaluate the best checkpoint of "
            "a run that trained normally (e.g. with a lower learning rate)."
        )
    if data.patient_ids is not None and len(data.patient_ids) != len(y_true):
        raise ValueError(f"patient_ids has {len(data.patient_ids)} entries but the dataset has {len(y_true)} images.")
    return y_true, raw, names, data.patient_ids


def multilabel_metrics(
    y_true, probabilities, label_names, patient_ids=None, thresholds=None, bootstrap: int = 1000, seed: int = 0
) -> dict:
    """The metrics of a multi-label model's sigmoid outputs.

    Args:
        y_true: (images, labels) 0/1.
        probabilities: (images, labels) sigmoid outputs.
        label_names: the labels, in column order.
        patient_ids: one id per image (the intervals then resample patients), or None (images).
        thresholds: {label index: threshold}, chosen beforehand (on validation); a label without one is called at
            0.5 (``chosen_on`` "default").
        bootstrap: resamples per interval (0: none).
        seed: the bootstrap's seed.

    Returns:
        ``multi_label`` True, ``labels``; ``per_label_auc`` {label: ROC AUC} (NaN for a label with no positive or
        no negative image, with a warning), ``per_label_auc_ci`` {label: [low, high]} and ``per_label_auc_ci_note``
        {label: why there is no interval (``too_few`` on that label's positive and negative units) or None};
        ``auc`` (the macro AUC: the labels' mean), ``auc_ci``, ``auc_ci_unit``, ``auc_ci_method``, ``auc_ci_note``
        (as a label's, or the first label's refusal); ``operating_points`` {label: threshold, chosen_on,
        sensitivity, specificity, n_positive, n_negative}; ``accuracy`` (of every label's call at its threshold, over
        images and labels); ``n``, ``n_patients``; ``predictions`` (``y_true``, ``probabilities``, ``patient_ids``).
    """
    y_true, probabilities = np.asarray(y_true).astype(np.int64), np.asarray(probabilities, dtype=np.float64)
    names = [str(c) for c in label_names]
    aucs = label_aucs(y_true, probabilities)
    undefined = [name for name, auc in zip(names, aucs) if not math.isfinite(auc)]
    if undefined:
        warnings.warn(
            f"Label(s) {undefined} have no positive or no negative image here: their AUC, and the macro AUC, are NaN.",
            stacklevel=3,
        )
    empty = {"low": math.nan, "high": math.nan, "unit": None, "method": None, "no_interval": "no resamples"}
    intervals = label_auc_intervals(y_true, probabilities, patient_ids, bootstrap, seed) if bootstrap else []
    intervals = intervals or [empty] * len(names)
    refused = next((f"{n}: {i['no_interval']}" for n, i in zip(names, intervals) if i["no_interval"]), None)
    macro_auc = float(np.mean(aucs))
    macro = empty
    if bootstrap and math.isfinite(macro_auc):
        macro = macro_auc_interval(y_true, probabilities, patient_ids, bootstrap, seed, refused)
    points = {
        name: _operating_point(y_true[:, k], probabilities[:, k], (thresholds or {}).get(k))
        for k, name in enumerate(names)
    }
    called = np.column_stack([probabilities[:, k] >= points[name]["threshold"] for k, name in enumerate(names)])
    return {
        "multi_label": True,
        "labels": names,
        "auc": macro_auc,
        "auc_ci": (macro["low"], macro["high"]),
        "auc_ci_unit": macro["unit"],
        "auc_ci_method": macro["method"],
        "auc_ci_note": macro["no_interval"],
        "per_label_auc": dict(zip(names, aucs)),
        "per_label_auc_ci": {name: (i["low"], i["high"]) for name, i in zip(names, intervals)},
        "per_label_auc_ci_note": {name: i["no_interval"] for name, i in zip(names, intervals)},
        "operating_points": points,
        "accuracy": float((called == (y_true == 1)).mean()),
        "n": int(len(y_true)),
        "n_patients": None if patient_ids is None else len(set(map(str, patient_ids))),
        "predictions": {
            "y_true": y_true.tolist(),
            "probabilities": probabilities.tolist(),
            "patient_ids": None if patient_ids is None else [str(p) for p in patient_ids],
        },
    }


def _operating_point(truth, scores, threshold) -> dict:
    chosen = 0.5 if threshold is None else float(threshold)
    called, truth = scores >= chosen, truth == 1
    return {
        "threshold": chosen,
        "chosen_on": "default" if threshold is None else "validation",
        "sensitivity": float((called & truth).sum() / truth.sum()) if truth.any() else math.nan,
        "specificity": float((~called & ~truth).sum() / (~truth).sum()) if (~truth).any() else math.nan,
        "n_positive": int(truth.sum()),
        "n_negative": int((~truth).sum()),
    }


def evaluate_multilabel(model, dataset, *, bootstrap: int, seed: int, val=None, unsupported=(), **dataset_info) -> dict:
    """``evaluate`` of a multi-label model (``multilabel_metrics`` of its predictions on ``dataset``), at the
    per-label thresholds it carries, else chosen on ``val`` (Youden's J per label), else 0.5.

    Args:
        unsupported: (argument, value) pairs of ``evaluate`` that a multi-label model does not take; one given is
            refused in one line.
        **dataset_info: ``class_names``, ``patient_ids``, ``batch_size`` as ``evaluate`` takes them.
    """
    for argument, value in unsupported:
        if value is not None:
            raise ValueError(
                f"{argument}= is not available for a multi-label model (per-label AUCs and operating points at its "
                "validation thresholds are reported): leave it out."
            )
    batch_size = dataset_info.get("batch_size", 32)
    y_true, raw, names, patients = multilabel_predictions(
        model, dataset, batch_size, dataset_info.get("class_names"), dataset_info.get("patient_ids")
    )
    thresholds = getattr(model, "radtransfer_thresholds", None)
    if not thresholds and val is not None:
        y_val, raw_val, _, _ = multilabel_predictions(model, val, batch_size)
        thresholds = label_thresholds(y_val, raw_val)
    return multilabel_metrics(y_true, raw, names, patients, thresholds, bootstrap, seed)
