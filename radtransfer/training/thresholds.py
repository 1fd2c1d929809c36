"""Operating thresholds, chosen on validation data as fine_tune finishes: Youden's J of each class's probability
(the number itself: ``stats.thresholds.youden_threshold``), and scoring a model on labelled batches."""

from __future__ import annotations

import numpy as np

from ..data.failures import readable_pipeline_errors
from ..models.trained import probabilities_of
from ..stats.thresholds import youden_threshold
from ..utils.progress import progress


def predict_with_labels(model, dataset, *, scaled: bool = True, multi_label: bool = False):
    """Runs the model over batches of (images, one-hot labels).

    Args:
        model: a Keras model with a softmax output.
        dataset: batches of (images, one-hot labels).
        scaled: apply the model's temperature, if it has one (``models.trained.probabilities_of``); False: its
            raw softmax outputs, on which thresholds are chosen and temperatures fitted.
        multi_label: the labels are multi-hot rows, returned whole (a multi-label model's outputs are its raw
            sigmoids: no temperature).

    Returns:
        (y_true, probabilities): integer labels (multi-label: (images, labels) 0/1 int rows) and (images, classes)
        float64 probabilities.
    """
    truths, probabilities = [], []
    with readable_pipeline_errors(dataset):
        for images, labels in progress(dataset, total=_batches(dataset), desc="scoring", unit="batch", min_items=8):
            probabilities.append(np.asarray(model.predict_on_batch(np.asarray(images)), dtype=np.float64))
            labels = np.asarray(labels)
            truths.append((labels > 0.5).astype(np.int64) if multi_label else labels.argmax(axis=-1))
    if not truths:
        raise ValueError("The evaluation dataset is empty.")
    raw = np.concatenate(probabilities)
    return np.concatenate(truths), probabilities_of(model, raw) if scaled and not multi_label else raw


def _batches(dataset) -> int | None:
    """How many batches a dataset yields, when it knows (tf.data's cardinality, a PyDataset's num_batches)."""
    count = getattr(dataset, "num_batches", None)
    if count is None and hasattr(dataset, "cardinality"):
        count = int(dataset.cardinality())
    return count if count is not None and count >= 0 else None


def validation_thresholds(model, val, num_classes: int, multi_label: bool = False) -> dict | None:
    """Two classes: Youden's J threshold of each class's probability on the validation set, {class index:
    threshold}, each chosen for that class as the positive one. None for more classes, a validation set
    with one class, or predictions that are not finite. Multi-label: {label index: Youden's J threshold of that
    label's sigmoid}, for each label with positive and negative validation images."""
    if multi_label:
        return label_thresholds(*predict_with_labels(model, val, scaled=False, multi_label=True))
    if num_classes != 2:
        return None
    y_true, probabilities = predict_with_labels(model, val, scaled=False)  # thresholds live on the raw outputs
    if len(np.unique(y_true)) < 2 or not np.isfinite(probabilities).all():
        return None
    return {c: youden_threshold(y_true == c, probabilities[:, c]) for c in range(num_classes)}


def label_thresholds(y_true, probabilities) -> dict | None:
    """{label: Youden's J threshold of its sigmoid} over the labels whose validation images hold both values; None
    for predictions that are not finite or no such label."""
    if not np.isfinite(probabilities).all():
        return None
    chosen = {
        k: youden_threshold(y_true[:, k] == 1, probabilities[:, k])
        for k in range(y_true.shape[1])
        if 0 < y_true[:, k].sum() < len(y_true)
    }
    return chosen or None
