"""The small-sample notes' rule (under 20 units in the class an interval rests on, or under 5 units' worth on a share's
rarer side), and the under-coverage it warns of shown by a seeded simulation with a known truth (the figures:
benchmarks/interval_coverage.py, docs/training.md). The notes on evaluate's intervals: tests/evaluation/."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from radtransfer.stats.bootstrap import SMALL_SAMPLE_UNITS, bootstrap_operating_point_ci, small_sample_note


def test_the_rarer_side_rule_is_units_times_the_rarer_share_under_5():
    assert small_sample_note(20, "patient", "positive", share=0.95).startswith("1.0 of 20 positive patients")
    assert small_sample_note(30, "patient", "negative", share=0.1).startswith("3.0 of 30 negative patients")
    assert small_sample_note(50, "patient", share=0.9) is None and small_sample_note(100, "image", share=0.95) is None
    assert small_sample_note(19, "image", share=0.5).startswith("only 19 images (under 20)")
    assert small_sample_note(1, "patient", "positive") == (
        "only 1 positive patient (under 20): such intervals cover less than 95%, see docs/training.md"
    )
    assert small_sample_note(None, "patient") is None and small_sample_note(20, "patient", share=math.nan) is None


def _coverage(positive_patients, sensitivity, sims, rng, slices=4, patient_sd=1.0, slice_sd=0.5):
    """Share of 95% patient-level sensitivity intervals covering the true sensitivity: each positive patient's
    images are called positive when effect + patient effect + image noise ≥ 0, so calls cluster by patient and
    the true image-level sensitivity is Φ(effect / √(patient_sd² + slice_sd²))."""
    effect = sps.norm.ppf(sensitivity) * math.hypot(patient_sd, slice_sd)
    patients = 2 * positive_patients
    labels = np.repeat(np.arange(patients) % 2, slices)
    groups = np.repeat(np.arange(patients), slices)
    covered = 0
    for _ in range(sims):
        score = np.repeat(rng.normal(0, patient_sd, patients), slices) + rng.normal(0, slice_sd, len(labels))
        called = np.where(labels == 1, effect + score >= 0, score >= 0)
        ci = bootstrap_operating_point_ci(labels, called, 1, groups=groups, n=200, seed=int(rng.integers(2**31)))
        covered += ci["sensitivity"]["low"] <= sensitivity <= ci["sensitivity"]["high"]
    return covered / sims


def test_the_note_warns_where_the_sensitivity_interval_under_covers():
    """Seeded simulation with a known true sensitivity (the figures with 500 simulations are in docs/training.md):
    with 10 positive patients and a true sensitivity of 0.95 the interval covers far less than 95% (often every
    image is called right and the interval is 1–1); with 25 patients at 0.8 it is near 95%."""
    rng = np.random.default_rng(7)
    assert 10 < SMALL_SAMPLE_UNITS <= 25
    assert _coverage(10, 0.95, 80, rng) < 0.85
    assert _coverage(25, 0.80, 80, rng) > 0.88
