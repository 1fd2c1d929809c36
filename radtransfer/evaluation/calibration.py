"""Calibration: how far predicted probabilities are from observed frequencies, and temperature scaling.

- ``brier_score``: two classes, the mean squared difference between the positive class's probability and the
  0/1 label (scikit-learn's ``brier_score_loss``); more classes, the mean over images of the sum over classes of
  (p - y)^2 with y one-hot (Brier 1950's original definition, which is twice the two-class one on two classes).
- ``expected_calibration_error``: top-label ECE with equal-width bins (Guo et al. 2017): images binned by their
  largest probability into ((m-1)/M, m/M], and the bins' |accuracy - mean confidence| averaged, weighted by
  their share of images; the bin table is returned with it for a reliability diagram.
- ``fit_temperature``: the one temperature T that minimises the negative log-likelihood of
  softmax(log p / T) on validation data (Guo et al. 2017). Dividing every logit by one T > 0 keeps each image's
  ranking of classes, so the predicted class and accuracy are unchanged. With two classes it also keeps the
  ranking of images (p1 = sigmoid((z1 - z0) / T) is monotone in z1 - z0), so AUC is unchanged. With more
  classes it does not: an image's probability of class k depends on its other logits too, so one-vs-rest AUCs
  can move a little (0.850 to 0.851 in the tests); a report must not promise them unchanged.
- ``apply_temperature``: softmax(log p / T), defined in ``models/temperature.py`` (where the saved model's
  temperature is applied) and re-exported here.

A trained model's temperature is fitted and saved by ``calibrate`` (``temperature_scaling.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.temperature import apply_temperature, log_probabilities

__all__ = [
    "BINS",
    "CalibrationBin",
    "TEMPERATURE_BOUNDS",
    "apply_temperature",
    "brier_score",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
]

BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)  # where fit_temperature searches


def _checked(y_true, probabilities) -> tuple[np.ndarray, np.ndarray]:
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
    y, p = _checked(y_true, probabilities)
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
    y, p = _checked(y_true, probabilities)
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


def negative_log_likelihood(y_true, probabilities) -> float:
    """The mean over images of −log p(true class) (probabilities floored at 1e-12): scikit-learn's ``log_loss``
    on probabilities that sum to one."""
    y, p = _checked(y_true, probabilities)
    return float(-np.mean(log_probabilities(p)[np.arange(len(y)), y]))


def fit_temperature(y_true, probabilities, bounds=TEMPERATURE_BOUNDS) -> float:
    """The temperature that minimises the validation negative log-likelihood of softmax(log p / T)."""
    from scipy.optimize import minimize_scalar

    y, p = _checked(y_true, probabilities)
    if len(y) == 0:
        raise ValueError("fit_temperature needs at least one labelled image.")
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(y, apply_temperature(p, float(np.exp(log_t)))),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(found.x))
