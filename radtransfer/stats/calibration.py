"""Calibration: how far predicted probabilities are from observed frequencies.

- ``brier_score``: two classes, the mean squared difference between the positive class's probability and the
  0/1 label (scikit-learn's ``brier_score_loss``); more classes, the mean over images of the sum over classes of
  (p - y)^2 with y one-hot (Brier 1950's original definition, which is twice the two-class one on two classes).
- ``expected_calibration_error``: top-label ECE with equal-width bins (Guo et al. 2017): images binned by their
  largest probability into ((m-1)/M, m/M], and the bins' |accuracy - mean confidence| averaged, weighted by
  their share of images; the bin table is returned with it for a reliability diagram.
- ``negative_log_likelihood``: the mean over images of −log p(true class), what ``temperature.fit_temperature``
  minimises.

Temperature scaling (fitting and applying T) is ``temperature.py``; a trained model's temperature is fitted and saved
by ``calibrate`` (``evaluation/temperature_scaling.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BINS",
    "CalibrationBin",
    "brier_score",
    "checked_probabilities",
    "expected_calibration_error",
    "log_probabilities",
    "negative_log_likelihood",
]

BINS = 15
_FLOOR = 1e-12  # log(0) guard: a probability below it counts as this


def checked_probabilities(y_true, probabilities) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 and (images, classes) probabilities as float64, or ValueError naming the shape or the labels
    that do not fit."""
    y = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != len(y):
        raise ValueError(
            f"Expected probabilities of shape (n_images, n_classes) for {len(y)} labels. Received: {p.shape}"
        )
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"Labels must be in [0, {p.shape[1]}). Received: {y.min()}..{y.max()}")
    return y, p


def brier_score(y_true, probabilities) -> float:
    """The Brier score: two classes as scikit-learn's ``brier_score_loss`` on class 1's probability; more
    classes, the mean over images of the sum over classes of (p - y)^2."""
    y, p = checked_probabilities(y_true, probabilities)
    if p.shape[1] == 2:
        return float(np.mean((p[:, 1] - (y == 1)) ** 2))
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


@dataclass(frozen=True)
class CalibrationBin:
    """One confidence bin of a reliability diagram: (lower, upper], its images, their accuracy and mean top-label
    confidence."""

    lower: float
    upper: float
    count: int
    accuracy: float  # NaN for an empty bin
    confidence: float  # NaN for an empty bin


def expected_calibration_error(y_true, probabilities, bins: int = BINS) -> tuple[float, list]:
    """Top-label ECE with ``bins`` equal-width bins, and the bins (for a reliability diagram)."""
    y, p = checked_probabilities(y_true, probabilities)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)  # ((m-1)/M, m/M]
    table, ece = [], 0.0
    for m in range(bins):
        members = index == m
        count = int(members.sum())
        if count:
            accuracy, mean_confidence = float(correct[members].mean()), float(confidence[members].mean())
            ece += count / len(y) * abs(accuracy - mean_confidence)
        else:
            accuracy = mean_confidence = float("nan")
        table.append(CalibrationBin(float(edges[m]), float(edges[m + 1]), count, accuracy, mean_confidence))
    return float(ece), table


def log_probabilities(probabilities) -> np.ndarray:
    """log p, with p floored at 1e-12 (float64)."""
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _FLOOR, 1.0))


def negative_log_likelihood(y_true, probabilities) -> float:
    """The mean over images of −log p(true class) (probabilities floored at 1e-12): scikit-learn's ``log_loss``
    on probabilities that sum to one."""
    y, p = checked_probabilities(y_true, probabilities)
    return float(-np.mean(log_probabilities(p)[np.arange(len(y)), y]))
