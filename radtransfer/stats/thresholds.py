"""Operating thresholds from scores: Youden's J (the threshold fine_tune chooses on validation data for each class)."""

from __future__ import annotations

import numpy as np


def youden_threshold(positives, scores) -> float:
    """The score threshold that maximises sensitivity + specificity − 1 (Youden's J).

    Args:
        positives: per image, whether it is of the class whose score this is.
        scores: per image, that class's score (its probability).

    Returns:
        The threshold: an image is called positive when its score is ≥ it (at most 1).
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(np.asarray(positives, dtype=bool), np.asarray(scores, dtype=np.float64))
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))
