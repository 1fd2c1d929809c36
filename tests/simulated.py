"""Simulated predictions with a known truth, shared by the tests of the numbers (tests/stats/) and of the metrics
that use them (tests/evaluation/)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident(n, k, sharpness, seed):
    """Labels drawn from softmax(z), and a model reporting softmax(sharpness * z): over-confident when > 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 1.5
    truth = softmax(z)
    y = np.array([rng.choice(k, p=row) for row in truth])
    return y, softmax(sharpness * z)


def clustered(rng, patients=30, slices=20, effect=1.0, patient_sd=1.0, slice_sd=0.5):
    """Multi-slice data: each patient has one label, a random effect shared by its slices, and slice noise.
    The image-level AUC of this model is Φ(effect / √(2 (patient_sd² + slice_sd²)))."""
    labels = np.repeat(rng.permutation(np.arange(patients) % 2), slices)
    patient_effect = np.repeat(rng.normal(0, patient_sd, patients), slices)
    score = effect * labels + patient_effect + rng.normal(0, slice_sd, patients * slices)
    p = 1 / (1 + np.exp(-score))
    groups = np.repeat([f"p{i}" for i in range(patients)], slices)
    truth = sps.norm.cdf(effect / math.sqrt(2 * (patient_sd**2 + slice_sd**2)))
    return labels, np.stack([1 - p, p], axis=1), groups, truth
