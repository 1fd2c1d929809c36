"""Multi-label AUCs (one sigmoid per label, any number of labels per image): each label's ROC AUC with its own
patient-level bootstrap interval (the single-label bootstrap, applied to that label's 0/1 column), and the macro AUC
(their mean) with an interval over the same resampled patients."""

from __future__ import annotations

import math

import numpy as np

from .auc import _binary_auc, bootstrap_auc_ci, weighted_aucs
from .bootstrap import stratified_bootstrap_ci


def label_aucs(y_true, probabilities) -> list[float]:
    """Each label's ROC AUC (NaN for a label whose images are all positive or all negative).

    Args:
        y_true: (images, labels) 0/1.
        probabilities: (images, labels) scores.
    """
    y_true = np.asarray(y_true).astype(bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return [_binary_auc(y_true[:, k], probabilities[:, k]) for k in range(y_true.shape[1])]


def label_auc_intervals(y_true, probabilities, groups=None, n: int = 1000, seed: int = 0) -> list[dict]:
    """Each label's AUC interval as ``bootstrap_auc_ci`` gives it for that label's 0/1 column (patients resampled
    stratified by their majority value of the label; the minimum-units rule, ``too_few``, on that label's
    positive and negative units)."""
    y_true = np.asarray(y_true).astype(np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return [
        bootstrap_auc_ci(
            y_true[:, k], np.column_stack([1 - probabilities[:, k], probabilities[:, k]]), 1, groups, n, seed
        )
        for k in range(y_true.shape[1])
    ]


def macro_auc_interval(y_true, probabilities, groups=None, n: int = 1000, seed: int = 0, refused=None) -> dict:
    """The macro AUC's interval: patients (images without ``groups``) resampled without strata (a patient has
    several labels), the mean of the labels' AUCs in each resample; resamples lacking one label's positives or
    negatives have no macro AUC and are left out (then a percentile interval). ``refused``, a label's reason for
    having no interval (``too_few``), is the macro AUC's reason too."""
    y_true = np.asarray(y_true).astype(bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if refused:
        members = len(set(groups)) if groups is not None else len(y_true)
        return {
            "low": math.nan,
            "high": math.nan,
            "unit": "image" if groups is None else "patient",
            "n_units": members,
            "method": None,
            "resamples": 0,
            "level": 0.95,
            "no_interval": refused,
            "units_rested_on": None,
        }
    labels = range(y_true.shape[1])

    def macro(index):
        return float(np.mean([_binary_auc(y_true[index, k], probabilities[index, k]) for k in labels]))

    def of_weights(weights):
        return np.mean([weighted_aucs(y_true[:, k], probabilities[:, k], weights) for k in labels], axis=0)

    return stratified_bootstrap_ci(np.zeros(len(y_true), dtype=np.int64), macro, groups, n, seed, of_weights=of_weights)
