"""evaluate: honest metrics for a trained classifier (scikit-learn for ROC AUC and friends).

The reference reported Keras's AUC metric on the two-column softmax, which flattens both columns; here
a two-class AUC is the positive class's ROC AUC, and more classes get the macro one-vs-rest AUC.
"""

from __future__ import annotations

import numpy as np


def predict_with_labels(model, dataset, verbose=0):
    """Runs the model over a dataset of (images, one-hot labels); returns (y_true, probabilities)."""
    truths, probabilities = [], []
    for images, labels in dataset:
        probabilities.append(np.asarray(model.predict_on_batch(images), dtype=np.float64))
        truths.append(np.asarray(labels).argmax(axis=-1))
    if not truths:
        raise ValueError("The evaluation dataset is empty.")
    return np.concatenate(truths), np.concatenate(probabilities)


def _auc(y_true, probabilities, positive_class, num_classes):
    from sklearn.metrics import roc_auc_score

    if num_classes == 2:
        return float(roc_auc_score(y_true == positive_class, probabilities[:, positive_class]))
    return float(roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro",
                               labels=list(range(num_classes))))


def bootstrap_auc(y_true, probabilities, positive_class=1, n: int = 1000, seed: int = 0, level: float = 0.95):
    """Stratified bootstrap (resampling within each class) confidence interval of the AUC."""
    num_classes = probabilities.shape[1]
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y_true == c) for c in range(num_classes)]
    values = []
    for _ in range(n):
        sample = np.concatenate([rng.choice(idx, size=len(idx), replace=True) for idx in by_class if len(idx)])
        values.append(_auc(y_true[sample], probabilities[sample], positive_class, num_classes))
    tail = (1 - level) / 2 * 100
    return (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))), np.asarray(values)


def metrics_from_predictions(y_true, probabilities, class_names=None, positive_class=None, bootstrap: int = 1000,
                             seed: int = 0) -> dict:
    """All of evaluate()'s metrics from labels and predicted probabilities."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, roc_curve

    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_classes = probabilities.shape[1]
    class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if num_classes == 2 and positive_class is None:
        positive_class = 1
    if positive_class is not None and isinstance(positive_class, str):
        if positive_class not in class_names:
            raise ValueError(f"positive_class {positive_class!r} is not one of {class_names}.")
        positive_class = class_names.index(positive_class)
    present = np.unique(y_true)
    if len(present) < 2:
        raise ValueError(f"AUC needs at least two classes among the labels; only {present.tolist()} present.")
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(y_true, predicted, labels=list(range(num_classes)))
    result = {
        "n": int(len(y_true)),
        "class_names": class_names,
        "auc": _auc(y_true, probabilities, positive_class, num_classes),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, predicted)),
        "confusion_matrix": matrix.tolist(),
    }
    if num_classes == 2:
        result["positive_class"] = class_names[positive_class]
    sensitivity, specificity, per_class_auc = {}, {}, {}
    from sklearn.metrics import roc_auc_score

    for c, name in enumerate(class_names):
        tp = matrix[c, c]
        fn = matrix[c].sum() - tp
        fp = matrix[:, c].sum() - tp
        tn = matrix.sum() - tp - fn - fp
        sensitivity[name] = float(tp / (tp + fn)) if tp + fn else float("nan")
        specificity[name] = float(tn / (tn + fp)) if tn + fp else float("nan")
        positives = y_true == c
        per_class_auc[name] = float(roc_auc_score(positives, probabilities[:, c])) if 0 < positives.sum() < len(y_true) else float("nan")
    result["sensitivity"] = sensitivity
    result["specificity"] = specificity
    result["per_class_auc"] = per_class_auc
    if num_classes == 2:
        fpr, tpr, thresholds = roc_curve(y_true == positive_class, probabilities[:, positive_class])
        best = int(np.argmax(tpr - fpr))
        result["youden"] = {"threshold": float(min(thresholds[best], 1.0)), "sensitivity": float(tpr[best]),
                            "specificity": float(1 - fpr[best])}
    if bootstrap:
        result["auc_ci"], _ = bootstrap_auc(y_true, probabilities, positive_class, n=bootstrap, seed=seed)
    else:
        result["auc_ci"] = (float("nan"), float("nan"))
    result["predictions"] = {"y_true": y_true.tolist(), "probabilities": probabilities.tolist()}
    return result


def evaluate(model, dataset, *, positive_class=None, bootstrap: int = 1000, seed: int = 0, class_names=None,
             batch_size: int = 32) -> dict:
    """Evaluates a classifier on a test set.

    Args:
        model: a trained Keras model with a softmax output.
        dataset: a ``tf.data.Dataset`` of (images, one-hot labels), or an ImageSet (read with the model's
            input size, no augmentation, no shuffling).
        positive_class: for two classes, the class whose ROC AUC is reported (index or name; default 1).
        bootstrap: number of stratified bootstrap resamples for ``auc_ci`` (0 to skip).
        seed: the bootstrap's seed.
        class_names: names for the report (taken from an ImageSet when given one).
        batch_size: batch size when ``dataset`` is an ImageSet.

    Returns:
        A dict with ``auc`` (two classes: the positive class's ROC AUC; more: macro one-vs-rest),
        ``auc_ci`` (95% stratified bootstrap), ``accuracy``, ``balanced_accuracy``, ``sensitivity`` and
        ``specificity`` per class, ``per_class_auc``, ``confusion_matrix`` (rows: true class), ``youden``
        (two classes: threshold, sensitivity, specificity), ``n`` and ``predictions``
        (``y_true``, ``probabilities``).
    """
    from .data import ImageSet, make_dataset

    if isinstance(dataset, ImageSet):
        class_names = class_names or list(dataset.class_names)
        height, width = model.input_shape[1:3]
        dataset = make_dataset(dataset, image_size=(height, width), batch_size=batch_size, shuffle=False)
    y_true, probabilities = predict_with_labels(model, dataset)
    return metrics_from_predictions(y_true, probabilities, class_names, positive_class, bootstrap, seed)
