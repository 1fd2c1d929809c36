"""Statistics for AUCs: confidence intervals that respect patients, operating thresholds, and paired
comparisons of two models on the same test images.

Slices of one patient are not independent: resampling images treats 30 patients × 20 slices as 600
independent cases and gives intervals several times too narrow. Whenever patient ids are known, the
bootstrap here resamples patients (stratified by each patient's majority class), through
``scipy.stats.bootstrap`` with bias-corrected and accelerated (BCa) intervals.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

BCA_MAX_UNITS = 2000  # BCa's jackknife costs one AUC per unit; above this, percentile intervals
# Fewer resampled units (patients, or images without ids) than this in the class an interval rests on, and the
# bootstrap intervals here cover less than 95% in simulation (docs/training.md, benchmarks/interval_coverage.py).
SMALL_SAMPLE_UNITS = 20
# A share (sensitivity, specificity) whose rarer outcome holds fewer units' worth than this, units × min(share,
# 1 − share), also under-covers, whatever the count: 82% with 20 patients at 0.95 (same sources).
SMALL_SAMPLE_RARER = 5


def _average_ranks(x) -> np.ndarray:
    """1-based ranks with ties given their mean rank: scipy.stats.rankdata(x), without its per-call overhead
    (a bootstrap ranks a thousand resamples)."""
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, len(x)])
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(starts + (counts + 1) / 2, counts)
    return ranks


def _binary_auc(positives, scores) -> float:
    """ROC AUC by the Mann-Whitney rank form (ties count one half), the same number as
    sklearn.metrics.roc_auc_score at a fraction of its cost inside a bootstrap."""
    m = int(positives.sum())
    n = len(positives) - m
    if m == 0 or n == 0:
        return math.nan
    scores = np.asarray(scores)
    if scores.dtype.kind == "f" and np.isnan(scores).any():
        return math.nan  # as scipy's rankdata propagates NaN
    ranks = _average_ranks(scores)
    return float((ranks[positives].sum() - m * (m + 1) / 2) / (m * n))


def auc_score(y_true, probabilities, positive_class=1) -> float:
    """Two classes: the positive class's ROC AUC. More: the macro one-vs-rest AUC (the mean of each
    class's AUC against the rest, as scikit-learn's ``multi_class="ovr"``). NaN when a class is absent."""
    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_classes = probabilities.shape[1]
    if num_classes == 2:
        return _binary_auc(y_true == positive_class, probabilities[:, positive_class])
    if len(np.unique(y_true)) < num_classes:
        return math.nan
    return float(np.mean([_binary_auc(y_true == c, probabilities[:, c]) for c in range(num_classes)]))


def resampling_units(y_true, groups):
    """The units a bootstrap resamples (patients, or images without ``groups``), in strata by majority class.

    Args:
        y_true: integer labels per image.
        groups: patient id per image, or None (each image is its own unit).

    Returns:
        (members, strata, unit, n_units): per unit the array of its image indices; per class present, the array of
        the units whose majority class it is; "patient" or "image"; the number of units.
    """
    y_true = np.asarray(y_true)
    if groups is None:
        members = [np.array([i]) for i in range(len(y_true))]
        labels = y_true
        unit = "image"
    else:
        groups = np.asarray([str(g) for g in groups])
        unique, inverse = np.unique(groups, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1]
        members = np.split(order, bounds)
        labels = np.array([np.bincount(y_true[m]).argmax() for m in members])
        unit = "patient"
    strata = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    return members, [s for s in strata if len(s)], unit, len(members)


def units_per_class(y_true, groups=None) -> dict:
    """Per class present, how many resampling units have an image of it: patients with ``groups``, else images."""
    y_true = np.asarray(y_true)
    if groups is None:
        return {int(c): int((y_true == c).sum()) for c in np.unique(y_true)}
    groups = np.asarray([str(g) for g in groups])
    return {int(c): len(set(groups[y_true == c])) for c in np.unique(y_true)}


def small_sample_note(units, unit: str = "patient", which: str = "", where: str = "", share=None) -> str | None:
    """The note a 95% bootstrap interval carries where it covers less than 95% in simulation, else None: when the
    class it rests on has fewer than ``SMALL_SAMPLE_UNITS`` resampled units ("only 10 positive patients (under
    20): ..."), and, for a share, when its rarer outcome holds fewer than ``SMALL_SAMPLE_RARER`` units' worth
    ("1.5 of 30 positive patients on the rarer side ...": a sensitivity of 0.95, or of 1, the interval then 1–1).

    Args:
        units: the number of units in that class (None: unknown, no note).
        unit: "patient" or "image".
        which: a word before the unit ("positive"); where: words after it ("in the smallest class").
        share: the estimate, for a share of that class's images (sensitivity, specificity); None for an AUC.
    """
    if units is None:
        return None
    counted = " ".join(part for part in (which, unit if units == 1 else f"{unit}s", where) if part)
    see = "such intervals cover less than 95%, see docs/training.md"
    if units < SMALL_SAMPLE_UNITS:
        return f"only {units} {counted} (under {SMALL_SAMPLE_UNITS}): {see}"
    if share is None or not math.isfinite(share):
        return None
    rarer = min(share, 1.0 - share)
    if units * rarer >= SMALL_SAMPLE_RARER - 1e-9:  # 50 × (1 − 0.9) is 4.9999999999999991
        return None
    return (
        f"{units * rarer:.1f} of {units} {counted} on the rarer side (a share of {rarer:.3f}; under "
        f"{SMALL_SAMPLE_RARER}): {see}"
    )


def bootstrap_auc_ci(
    y_true, probabilities, positive_class=1, groups=None, n: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Confidence interval of the AUC by a stratified bootstrap of patients (or of images without groups).

    Args:
        y_true: integer labels per image.
        probabilities: (images, classes) predicted probabilities.
        positive_class: the class whose AUC is taken (two classes).
        groups: patient id per image (None: resample images).
        n: bootstrap resamples.
        seed: the resampling seed.
        level: the confidence level.

    Returns:
        {"low", "high", "unit" ("patient" or "image"), "n_units", "method" ("BCa" or "percentile"),
        "resamples", "level"}.
    """
    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return stratified_bootstrap_ci(
        y_true, lambda index: auc_score(y_true[index], probabilities[index], positive_class), groups, n, seed, level
    )


def bootstrap_operating_point_ci(
    y_true, called, positive_class=1, groups=None, n: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Confidence intervals of the sensitivity and specificity of fixed decisions (e.g. a threshold chosen
    beforehand), by the same stratified bootstrap of patients (or images) as ``bootstrap_auc_ci``, with the same
    resamples for a given seed.

    Args:
        y_true: integer labels per image.
        called: per image, whether it was called ``positive_class``.
        positive_class: the class whose sensitivity is taken.
        groups: patient id per image (None: resample images).
        n, seed, level: as ``bootstrap_auc_ci``.

    Returns:
        {"sensitivity": interval, "specificity": interval}, each as ``bootstrap_auc_ci`` returns it.
    """
    y_true = np.asarray(y_true)
    truth = y_true == positive_class
    called = np.asarray(called, dtype=bool)

    def share(selected, index):
        chosen = selected[index]
        return float(called[index][chosen].mean()) if chosen.any() else math.nan

    return {
        "sensitivity": stratified_bootstrap_ci(y_true, lambda i: share(truth, i), groups, n, seed, level),
        "specificity": stratified_bootstrap_ci(y_true, lambda i: 1.0 - share(~truth, i), groups, n, seed, level),
    }


def stratified_bootstrap_ci(y_true, statistic, groups=None, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """The interval of ``statistic(image indices)`` over a bootstrap of patients (or images without groups),
    stratified by each patient's majority class: BCa up to 2000 units, else (or when BCa fails because a resample
    has no value) percentile. Returns what ``bootstrap_auc_ci`` returns."""
    from scipy import stats

    members, strata, unit, n_units = resampling_units(y_true, groups)
    single = unit == "image"
    # A stratum of one unit is the same in every stratified resample: hold it fixed.
    fixed = np.concatenate([s for s in strata if len(s) < 2] or [np.zeros(0, dtype=np.int64)])
    strata = [s for s in strata if len(s) >= 2]
    if not strata:
        return {
            "low": math.nan,
            "high": math.nan,
            "unit": unit,
            "n_units": int(n_units),
            "method": None,
            "resamples": 0,
            "level": level,
        }

    def resampled(*samples):
        chosen = np.concatenate([*samples, fixed])
        return statistic(chosen if single else np.concatenate([members[u] for u in chosen]))

    method = "BCa" if n_units <= BCA_MAX_UNITS else "percentile"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap(
            tuple(strata),
            resampled,
            n_resamples=n,
            vectorized=False,
            paired=False,
            confidence_level=level,
            method=method,
            random_state=seed,
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        # A resample without one of the classes has no AUC; BCa then fails as a whole. Fall back to the
        # percentile interval of the resamples that have one.
        values = np.asarray(result.bootstrap_distribution)
        values = values[np.isfinite(values)]
        tail = (1 - level) / 2
        low, high = (
            (float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail)))
            if len(values)
            else (math.nan, math.nan)
        )
        method = "percentile"
    return {
        "low": low,
        "high": high,
        "unit": unit,
        "n_units": int(n_units),
        "method": method,
        "resamples": int(n),
        "level": level,
    }


# -- comparing two models on the same images ----------------------------------------------------


def _midranks(x):
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    n = len(x)
    ranks = np.empty(n, dtype=np.float64)
    i = 0
    while i < n:
        j = i
        while j < n and sorted_x[j] == sorted_x[i]:
            j += 1
        ranks[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n, dtype=np.float64)
    out[order] = ranks
    return out


def delong_test(positives, scores_a, scores_b) -> dict:
    """DeLong's test (DeLong et al. 1988, in Sun & Xu's 2014 fast form) of two correlated ROC AUCs on the
    same cases: the difference, its standard error and the two-sided P value."""
    from scipy import stats

    positives = np.asarray(positives, dtype=bool)
    m, n = int(positives.sum()), int((~positives).sum())
    if m < 2 or n < 2:
        raise ValueError("DeLong's test needs at least two positive and two negative cases.")
    scores = np.vstack([np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)])
    order = np.concatenate([np.flatnonzero(positives), np.flatnonzero(~positives)])
    scores = scores[:, order]
    aucs, v10, v01 = [], [], []
    for row in scores:
        tx, ty, tz = _midranks(row[:m]), _midranks(row[m:]), _midranks(row)
        aucs.append(tz[:m].sum() / (m * n) - (m + 1) / (2 * n))
        v10.append((tz[:m] - tx) / n)
        v01.append(1 - (tz[m:] - ty) / m)
    covariance = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    diff = aucs[0] - aucs[1]
    se = math.sqrt(max(variance, 0.0))
    z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    p = float(2 * stats.norm.sf(abs(z))) if math.isfinite(z) else 0.0
    return {
        "method": "delong",
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "diff": float(diff),
        "se": se,
        "z": float(z),
        "p": p,
        "unit": "image",
    }


def paired_bootstrap_test(
    y_true,
    probabilities_a,
    probabilities_b,
    positive_class=1,
    groups=None,
    n: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Paired bootstrap of AUC(a) − AUC(b): both models scored on the same resampled patients (or images).
    The P value is twice the smaller share of resampled differences on either side of zero."""
    y_true = np.asarray(y_true)
    a = np.asarray(probabilities_a, dtype=np.float64)
    b = np.asarray(probabilities_b, dtype=np.float64)
    members, strata, unit, n_units = resampling_units(y_true, groups)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        chosen = np.concatenate([rng.choice(s, size=len(s), replace=True) for s in strata])
        index = np.concatenate([members[u] for u in chosen])
        diff = auc_score(y_true[index], a[index], positive_class) - auc_score(y_true[index], b[index], positive_class)
        if math.isfinite(diff):
            diffs.append(diff)
    diffs = np.asarray(diffs)
    auc_a, auc_b = auc_score(y_true, a, positive_class), auc_score(y_true, b, positive_class)
    tail = (1 - level) / 2
    p = float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean()))) if len(diffs) else math.nan
    return {
        "method": "paired_bootstrap",
        "auc_a": auc_a,
        "auc_b": auc_b,
        "diff": auc_a - auc_b,
        "ci": [float(np.quantile(diffs, tail)), float(np.quantile(diffs, 1 - tail))] if len(diffs) else [math.nan] * 2,
        "p": p,
        "unit": unit,
        "n_units": int(n_units),
        "resamples": int(len(diffs)),
    }


def compare_aucs(
    y_true, probabilities_a, probabilities_b, positive_class=1, groups=None, n: int = 2000, seed: int = 0
) -> dict:
    """The right paired test of two models' AUCs on the same test images.

    DeLong's test for two classes when each patient contributes one image (or patients are unknown);
    a paired patient-level bootstrap when patients have several images (DeLong assumes independent
    cases) or for more than two classes.
    """
    y_true = np.asarray(y_true)
    a = np.asarray(probabilities_a)
    clustered = groups is not None and len(set(map(str, groups))) < len(y_true)
    if a.shape[1] == 2 and not clustered:
        positives = y_true == positive_class
        if 2 <= positives.sum() <= len(y_true) - 2:
            return delong_test(positives, a[:, positive_class], np.asarray(probabilities_b)[:, positive_class])
    return paired_bootstrap_test(y_true, a, probabilities_b, positive_class, groups if clustered else None, n, seed)
