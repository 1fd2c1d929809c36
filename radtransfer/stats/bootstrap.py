"""The patient-level bootstrap: resampling units (patients, or images without patient ids) stratified by class,
the interval of any statistic over them (BCa, or percentile), the intervals of a fixed decision's sensitivity and
specificity, and what a sample can carry (the small-sample notes).

Slices of one patient are not independent: resampling images treats 30 patients × 20 slices as 600
independent cases and gives intervals several times too narrow. Whenever patient ids are known, the
bootstrap here resamples patients (stratified by each patient's majority class), through
``scipy.stats.bootstrap`` with bias-corrected and accelerated (BCa) intervals.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

WEIGHT_CELLS = 4_000_000  # resamples × images per vectorised call (32 MB of weights)
BCA_MAX_UNITS = 2000  # BCa's jackknife costs one AUC per unit; above this, percentile intervals
# Fewer resampled units (patients, or images without ids) than this in the class an interval rests on, and the
# bootstrap intervals here cover less than 95% in simulation (docs/training.md, benchmarks/interval_coverage.py).
SMALL_SAMPLE_UNITS = 20
# A share (sensitivity, specificity) whose rarer outcome holds fewer units' worth than this, units × min(share,
# 1 − share), also under-covers, whatever the count: 82% with 20 patients at 0.95 (same sources).
SMALL_SAMPLE_RARER = 5
# The one minimum-units rule (``too_few``): fewer independent units than this on a side a statistic's variation is
# estimated from, and it gets no interval, no P value and no verdict.
MIN_UNITS = 3


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


def unit_weights(draws, members, n_images: int) -> np.ndarray:
    """Per resample (a row of ``draws``, the units drawn), how often each image was drawn: the (resamples, images)
    weights under which a statistic of the images equals that statistic of the resample's images."""
    draws = np.asarray(draws, dtype=np.intp)
    unit_of = np.empty(n_images, dtype=np.intp)
    for unit, images in enumerate(members):
        unit_of[images] = unit
    rows, n_units = len(draws), len(members)
    offsets = (draws + np.arange(rows, dtype=np.intp)[:, None] * n_units).ravel()
    counts = np.bincount(offsets, minlength=rows * n_units).reshape(rows, n_units)
    return counts[:, unit_of].astype(np.float64)


def units_per_class(y_true, groups=None) -> dict:
    """Per class present, how many resampling units have an image of it: patients with ``groups``, else images."""
    y_true = np.asarray(y_true)
    if groups is None:
        return {int(c): int((y_true == c).sum()) for c in np.unique(y_true)}
    groups = np.asarray([str(g) for g in groups])
    return {int(c): len(set(groups[y_true == c])) for c in np.unique(y_true)}


def too_few(units, unit: str = "patient", which: str = "", where: str = "") -> str | None:
    """The one minimum-units rule of every interval and test: with fewer than ``MIN_UNITS`` (3) independent units on
    a side the statistic's variation is estimated from, the reason it has no interval, no P value and no verdict
    ("no interval (2 positive patients: fewer than 3)"); else None.

    The units: for a bootstrap of one test set, the resampling units (patients, or images without ids) of each class
    the statistic rests on (every class for an AUC or a paired comparison of AUCs; the positive class for a
    sensitivity, the negative one for a specificity); for a between-run statistic (the t interval on the folds, the
    mixed model, TOST on the folds, tests over scenarios), the folds or scenarios.

    Why 3. A class of one unit is the same in every stratified resample: its sampling error is absent, and a paired
    bootstrap of two runs on 1 + 1 test patients has every resampled difference equal to the observed one (a
    zero-width interval, P = 0). With two units a class has three distinct resamples, half of its draws repeat one
    unit, and the stratified bootstrap's 95% interval of the AUC covered the true AUC 56% of the time with 2 patients
    per class (44% of those intervals of zero width), 78% with 3, 85% with 4, 91% with 5 (binormal scores, true AUC
    0.76, 300 test sets each; benchmarks/minimum_units.py). Between runs, two folds leave the fold-level SE one
    degree of freedom (a t quantile of 12.7) and a zero SE, a zero-width interval, whenever the two folds' AUC
    differences coincide, as they often do on small test sets. From 3 units on, the interval is given, with the
    small-sample note under ``SMALL_SAMPLE_UNITS``.

    Args:
        units: the number of units (None: unknown, no refusal).
        unit: "patient", "image", "fold", "scenario".
        which: a word before the unit ("positive"); where: words after it ("in the smallest class").
    """
    if units is None or units >= MIN_UNITS:
        return None
    counted = " ".join(part for part in (which, unit if units == 1 else f"{unit}s", where) if part)
    return f"no interval ({units} {counted}: fewer than {MIN_UNITS})"


def no_spread(units: int, unit: str = "fold") -> str:
    """The reason a between-run interval is not given when its units agree exactly (a zero SE: the interval would
    have zero width), however many they are."""
    return f"no interval (the {units} {unit}s agree exactly: no spread to estimate from)"


def bootstrap_p(extreme: int, resamples: int) -> float:
    """A one-sided bootstrap P value from ``extreme`` of ``resamples`` replicates at or beyond the null:
    (extreme + 1) / (resamples + 1) (Davison & Hinkley 1997, eq. 4.11; North et al. 2002), counting the observed
    sample as one of the replicates. The plain share, extreme / resamples, says P = 0 when no replicate crosses the
    null, a certainty that B resamples cannot give: the smallest P they can support is 1 / (B + 1)."""
    return (int(extreme) + 1) / (int(resamples) + 1)


def units_by_stratum(y_true, groups=None) -> dict:
    """Per class, how many resampling units a stratified bootstrap draws from its stratum (patients by their
    majority class, as ``resampling_units``; images without ``groups``); 0 for a class without units."""
    y_true = np.asarray(y_true)
    members, _, _, _ = resampling_units(y_true, groups)
    majority = [int(np.bincount(y_true[m]).argmax()) for m in members]
    return {int(c): majority.count(int(c)) for c in np.unique(y_true)}


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


def bootstrap_operating_point_ci(
    y_true, called, positive_class=1, groups=None, n: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Confidence intervals of the sensitivity and specificity of fixed decisions (e.g. a threshold chosen
    beforehand), by the same stratified bootstrap of patients (or images) as ``stratified_bootstrap_ci`` (and the AUC's
    ``bootstrap_auc_ci``), with the same resamples for a given seed.

    Args:
        y_true: integer labels per image.
        called: per image, whether it was called ``positive_class``.
        positive_class: the class whose sensitivity is taken.
        groups: patient id per image (None: resample images).
        n, seed, level: resamples, their seed and the confidence level.

    Returns:
        {"sensitivity": interval, "specificity": interval}, each as ``stratified_bootstrap_ci`` returns it (none, with
        ``no_interval`` saying why, under ``MIN_UNITS`` positive units for the sensitivity, negative for the
        specificity).
    """
    y_true = np.asarray(y_true)
    truth = y_true == positive_class
    called = np.asarray(called, dtype=bool)

    def share(selected, index):
        chosen = selected[index]
        return float(called[index][chosen].mean()) if chosen.any() else math.nan

    def share_of_weights(selected):
        def shares(weights):
            total = weights[:, selected].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(total > 0, weights[:, selected & called].sum(axis=1) / total, math.nan)

        return shares

    sensitivity, specificity = share_of_weights(truth), share_of_weights(~truth)
    negatives = [int(c) for c in np.unique(y_true) if c != positive_class]
    return {
        "sensitivity": stratified_bootstrap_ci(
            y_true,
            lambda i: share(truth, i),
            groups,
            n,
            seed,
            level,
            of_weights=sensitivity,
            rests_on=[positive_class],
            which="positive",
        ),
        "specificity": stratified_bootstrap_ci(
            y_true,
            lambda i: 1.0 - share(~truth, i),
            groups,
            n,
            seed,
            level,
            of_weights=lambda w: 1.0 - specificity(w),
            rests_on=negatives,
            which="negative",
        ),
    }


def stratified_bootstrap_ci(
    y_true,
    statistic,
    groups=None,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    *,
    of_weights=None,
    rests_on=None,
    which: str = "",
) -> dict:
    """The interval of ``statistic(image indices)`` over a bootstrap of patients (or images without groups),
    stratified by each patient's majority class: BCa up to 2000 units, else (or when BCa fails because a resample
    has no value) percentile.

    ``of_weights``, if given, is the same statistic computed for many resamples at once from their images' draw
    counts (``(resamples, images)`` weights to ``(resamples,)`` values, as ``unit_weights`` makes them): the same
    resamples and values (to the last bit, for the AUC and shares here), without a Python call per resample.

    The minimum-units rule (``too_few``): when a class the statistic rests on (``rests_on``, a list of classes;
    None: every class present) has fewer than ``MIN_UNITS`` units, there is no interval: NaN ends, no method, 0
    resamples, and ``no_interval`` says why (``which`` is the word before the unit in it, e.g. "positive"; without
    ``rests_on`` the smallest class is named).

    Returns:
        {"low", "high", "unit" ("patient" or "image"), "n_units", "method" ("BCa" or "percentile"; None without an
        interval), "resamples", "level", "no_interval" (None, or why there is none), "units_rested_on" (the units of
        the smallest class it rests on)}.
    """
    from scipy import stats

    y_true = np.asarray(y_true)
    members, strata, unit, n_units = resampling_units(y_true, groups)
    single = unit == "image"
    per_class = units_by_stratum(y_true, groups)
    classes = list(per_class) if rests_on is None else [int(c) for c in rests_on]
    smallest = min((per_class.get(c, 0) for c in classes), default=0)
    reason = too_few(smallest, unit, which, "" if rests_on is not None else "in the smallest class")
    # A stratum of one unit is the same in every stratified resample: hold it fixed.
    fixed = np.concatenate([s for s in strata if len(s) < 2] or [np.zeros(0, dtype=np.int64)])
    strata = [s for s in strata if len(s) >= 2]
    if reason or not strata:
        return {
            "low": math.nan,
            "high": math.nan,
            "unit": unit,
            "n_units": int(n_units),
            "method": None,
            "resamples": 0,
            "level": level,
            "no_interval": reason or too_few(0, unit, which),
            "units_rested_on": int(smallest),
        }

    def resampled(*samples):
        chosen = np.concatenate([*samples, fixed])
        return statistic(chosen if single else np.concatenate([members[u] for u in chosen]))

    def resampled_batch(*samples, axis=-1):
        lead = np.broadcast_shapes(*(np.shape(s)[:-1] for s in samples))
        parts = [np.broadcast_to(s, lead + np.shape(s)[-1:]) for s in (*samples, fixed)]
        draws = np.concatenate(parts, axis=-1).reshape(-1, sum(np.shape(p)[-1] for p in parts))
        rows = max(1, WEIGHT_CELLS // max(len(y_true), 1))  # resamples per call, so each weights array stays small
        values = [
            of_weights(unit_weights(draws[k : k + rows], members, len(y_true))) for k in range(0, len(draws), rows)
        ]
        return np.concatenate(values).astype(np.float64).reshape(lead)

    method = "BCa" if n_units <= BCA_MAX_UNITS else "percentile"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap(
            tuple(strata),
            resampled if of_weights is None else resampled_batch,
            n_resamples=n,
            vectorized=of_weights is not None,
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
        "no_interval": None,
        "units_rested_on": int(smallest),
    }
