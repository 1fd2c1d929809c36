"""The AUC: its rank (Mann-Whitney) form, its patient-level interval, and paired comparisons of two models on the
same test images (DeLong's test, or a paired bootstrap of patients when patients have several images).

The intervals resample patients whenever patient ids are known (``bootstrap.py`` says why).
"""

from __future__ import annotations

import math

import numpy as np

from .bootstrap import (
    MIN_UNITS,
    WEIGHT_CELLS,
    bootstrap_p,
    resampling_units,
    stratified_bootstrap_ci,
    too_few,
    unit_weights,
    units_by_stratum,
)


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


def weighted_aucs(positives, scores, weights):
    """Binary ROC AUCs of one test set under many weightings (ties count one half), vectorised.

    A bootstrap resample of images or patients is a weighting of the original images by how often each was drawn;
    the AUC of the resample (its Mann-Whitney statistic) equals the weighted AUC, as
    ``sklearn.metrics.roc_auc_score(..., sample_weight=w)`` computes it.

    Args:
        positives: (images,) booleans.
        scores: (images,) scores.
        weights: (resamples, images) non-negative weights.

    Returns:
        (resamples,) AUCs, NaN where a resample has no positive or no negative weight.
    """
    positives = np.asarray(positives, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # tie groups
    w = weights[:, order]
    pos = positives[order]
    w_pos = np.add.reduceat(w * pos, starts, axis=1)
    w_neg = np.add.reduceat(w * ~pos, starts, axis=1)
    below = np.cumsum(w_neg, axis=1) - w_neg  # negative weight strictly below each tie group
    total_pos, total_neg = w_pos.sum(axis=1), w_neg.sum(axis=1)
    numerator = (w_pos * (below + 0.5 * w_neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        aucs = numerator / (total_pos * total_neg)
    aucs[(total_pos <= 0) | (total_neg <= 0)] = np.nan
    return aucs


def weighted_auc_score(y_true, probabilities, weights, positive_class=1):
    """``auc_score`` (positive-class AUC, or macro one-vs-rest for more classes) under each weighting (rows of
    ``weights``, one weight per image): with a resample's draw counts as weights, the AUC of that resample, to the
    last bit (both are the rational U / (m n) rounded once)."""
    num_classes = probabilities.shape[1]
    if num_classes == 2:
        return weighted_aucs(y_true == positive_class, probabilities[:, positive_class], weights)
    per_class = [weighted_aucs(y_true == c, probabilities[:, c], weights) for c in range(num_classes)]
    return np.mean(per_class, axis=0)


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
        The interval as ``stratified_bootstrap_ci`` returns it: {"low", "high", "unit" ("patient" or "image"),
        "n_units", "method" ("BCa" or "percentile"), "resamples", "level", "no_interval", "units_rested_on"}; none
        (NaN, ``no_interval`` saying why) when a class has fewer than ``MIN_UNITS`` units (``bootstrap.too_few``).
    """
    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return stratified_bootstrap_ci(
        y_true,
        lambda index: auc_score(y_true[index], probabilities[index], positive_class),
        groups,
        n,
        seed,
        level,
        of_weights=None if np.isnan(probabilities).any() else _auc_of_weights(y_true, probabilities, positive_class),
    )


def _auc_of_weights(y_true, probabilities, positive_class):
    return lambda weights: weighted_auc_score(y_true, probabilities, weights, positive_class)


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
    if m < MIN_UNITS or n < MIN_UNITS:
        raise ValueError(
            f"DeLong's test needs at least {MIN_UNITS} positive and {MIN_UNITS} negative cases (bootstrap.too_few); "
            f"got {m} and {n}."
        )
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
        "n_units": m + n,
        "no_interval": None,
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
    The P value is twice the smaller share of resampled differences on either side of zero.

    Under the minimum-units rule (``bootstrap.too_few``: fewer than ``MIN_UNITS`` units in a class) there is no
    interval and no P value (NaN; on 1 + 1 patients every resampled difference is the observed one, which gave
    P = 0): ``no_interval`` says why, ``resamples`` is 0.

    Returns:
        {"method", "auc_a", "auc_b", "diff", "ci", "p", "unit", "n_units", "resamples", "no_interval"}.
    """
    y_true = np.asarray(y_true)
    a = np.asarray(probabilities_a, dtype=np.float64)
    b = np.asarray(probabilities_b, dtype=np.float64)
    resampled = resampled_auc_differences(y_true, a, b, positive_class, groups, n, seed)
    diffs, unit, n_units, reason = resampled["diffs"], resampled["unit"], resampled["n_units"], resampled["no_interval"]
    diffs = diffs[np.isfinite(diffs)]
    auc_a, auc_b = auc_score(y_true, a, positive_class), auc_score(y_true, b, positive_class)
    tail = (1 - level) / 2
    tail_count = min(int((diffs <= 0).sum()), int((diffs >= 0).sum()))
    p = float(min(1.0, 2 * bootstrap_p(tail_count, len(diffs)))) if len(diffs) else math.nan
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
        "no_interval": reason,
    }


def resampled_auc_differences(
    y_true, probabilities_a, probabilities_b, positive_class=1, groups=None, n: int = 2000, seed: int = 0
) -> dict:
    """AUC(a) − AUC(b) on each of ``n`` stratified resamples of the units (patients, or images without ``groups``),
    both AUCs on the same resample: the draws of ``paired_bootstrap_test``. The same (labels, groups, n, seed) give
    the same draws, so the differences of several model pairs on one test set line up resample by resample.

    Returns:
        {"diffs": one difference per resample (NaN where a resample has no AUC; none under the minimum-units rule),
        "unit", "n_units", "no_interval": ``bootstrap.too_few``'s reason, or None}.
    """
    y_true = np.asarray(y_true)
    a = np.asarray(probabilities_a, dtype=np.float64)
    b = np.asarray(probabilities_b, dtype=np.float64)
    members, strata, unit, n_units = resampling_units(y_true, groups)
    reason = too_few(min(units_by_stratum(y_true, groups).values()), unit, where="in the smallest class")
    if reason:
        n, strata = 0, []
    rng = np.random.default_rng(seed)
    draws = [np.concatenate([rng.choice(s, size=len(s), replace=True) for s in strata]) for _ in range(n)]
    if not draws:
        diffs = np.zeros(0)
    elif np.isnan(a).any() or np.isnan(b).any():
        diffs = np.array([_resampled_diff(y_true, a, b, positive_class, members, chosen) for chosen in draws])
    else:
        draws = np.stack(draws)
        rows = max(1, WEIGHT_CELLS // len(y_true))
        diffs = np.concatenate(
            [_weighted_diffs(y_true, a, b, positive_class, members, draws[k : k + rows]) for k in range(0, n, rows)]
        )
    return {"diffs": diffs, "unit": unit, "n_units": int(n_units), "no_interval": reason}


def _weighted_diffs(y_true, a, b, positive_class, members, draws) -> np.ndarray:
    weights = unit_weights(draws, members, len(y_true))
    return weighted_auc_score(y_true, a, weights, positive_class) - weighted_auc_score(
        y_true, b, weights, positive_class
    )


def _resampled_diff(y_true, a, b, positive_class, members, chosen) -> float:
    index = np.concatenate([members[u] for u in chosen])
    return auc_score(y_true[index], a[index], positive_class) - auc_score(y_true[index], b[index], positive_class)


def compare_aucs(
    y_true, probabilities_a, probabilities_b, positive_class=1, groups=None, n: int = 2000, seed: int = 0
) -> dict:
    """The right paired test of two models' AUCs on the same test images.

    DeLong's test for two classes when each patient contributes one image (or patients are unknown);
    a paired patient-level bootstrap when patients have several images (DeLong assumes independent
    cases) or for more than two classes. Under the minimum-units rule (``bootstrap.too_few``) neither: no interval,
    no P value, and ``no_interval`` says why (every result carries ``no_interval``: None when there is a test).
    """
    y_true = np.asarray(y_true)
    a = np.asarray(probabilities_a)
    clustered = groups is not None and len(set(map(str, groups))) < len(y_true)
    if a.shape[1] == 2 and not clustered:
        positives = y_true == positive_class
        if MIN_UNITS <= positives.sum() <= len(y_true) - MIN_UNITS:
            return delong_test(positives, a[:, positive_class], np.asarray(probabilities_b)[:, positive_class])
    return paired_bootstrap_test(y_true, a, probabilities_b, positive_class, groups if clustered else None, n, seed)
