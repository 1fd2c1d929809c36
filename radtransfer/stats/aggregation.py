"""From slices to units (patients, exams): one probability vector per unit from its slices' probabilities.

Two classes: the positive class's probability of the unit is the mean, the maximum or the noisy-or
(1 − ∏(1 − p), the probability that at least one slice is positive if slices were independent) of its slices'
positive-class probabilities, and the other class's probability is 1 minus it. Taking each class's maximum and
renormalising would not do: with softmax outputs the two maxima come from different slices. More classes: "mean"
averages the probability vectors; "max" and "noisy_or" have no one definition there and are refused.
"""

from __future__ import annotations

import numpy as np

AGGREGATES = ("mean", "max", "noisy_or")


def unit_index(units):
    """The units of images, in the order they first appear.

    Args:
        units: one unit id per image (compared as strings).

    Returns:
        (unit ids in first-seen order, each image's unit index, each unit's first image index).
    """
    units = np.asarray([str(u) for u in units])
    names, first, inverse = np.unique(units, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return names[order].astype(object), rank[np.ravel(inverse)], first[order]


def aggregate_probabilities(probabilities, index, aggregate: str = "mean", positive_class: int = 1) -> np.ndarray:
    """One probability vector per unit.

    Args:
        probabilities: (images, classes) probabilities.
        index: each image's unit index, 0 … units − 1 (``unit_index``'s second value).
        aggregate: "mean", "max" or "noisy_or" (the last two for two classes only).
        positive_class: two classes: the class whose probability is aggregated.

    Returns:
        (units, classes) probabilities.

    Raises:
        ValueError: an unknown aggregate, or "max"/"noisy_or" with more than two classes.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    index = np.asarray(index, dtype=np.intp)
    n_units, n_classes = int(index.max()) + 1 if len(index) else 0, probabilities.shape[1]
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate={aggregate!r} is not one of {list(AGGREGATES)}.")
    if n_classes != 2:
        if aggregate != "mean":
            raise ValueError(
                f"aggregate={aggregate!r} is defined for two classes (on the positive class's probability); with "
                f"{n_classes} classes use aggregate='mean'."
            )
        sums = np.zeros((n_units, n_classes))
        np.add.at(sums, index, probabilities)
        return sums / np.bincount(index, minlength=n_units)[:, None]
    positive = probabilities[:, positive_class]
    if aggregate == "mean":
        score = np.bincount(index, weights=positive, minlength=n_units) / np.bincount(index, minlength=n_units)
    elif aggregate == "max":
        score = np.full(n_units, -np.inf)
        np.maximum.at(score, index, positive)
    else:
        none = np.ones(n_units)
        np.multiply.at(none, index, 1.0 - positive)
        score = 1.0 - none
    out = np.empty((n_units, 2))
    out[:, positive_class], out[:, 1 - positive_class] = score, 1.0 - score
    return out


def unit_labels(y_true, index) -> tuple[np.ndarray, list]:
    """Each unit's label, and the units whose images disagree.

    Args:
        y_true: integer labels per image.
        index: each image's unit index (``unit_index``).

    Returns:
        (per unit its label (the smallest, where they disagree), the indices of the units whose images carry
        more than one label).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    index = np.asarray(index, dtype=np.intp)
    n_units = int(index.max()) + 1 if len(index) else 0
    low, high = np.full(n_units, np.iinfo(np.int64).max), np.full(n_units, -1)
    np.minimum.at(low, index, y_true)
    np.maximum.at(high, index, y_true)
    return low, [int(u) for u in np.flatnonzero(low != high)]
