"""Equivalence of the paired effect: two one-sided tests (TOST) of |difference| < m, in the t form on the folds and
the bootstrap form on ``grid.effects.paired_effects``' replicates, and ``equivalence``, both forms as the report gives
them for one row of ``paired_effects``."""

from __future__ import annotations

import math

import numpy as np

from ..stats.bootstrap import bootstrap_p, no_spread, too_few


def tost(
    values,
    margin: float,
    alpha: float = 0.05,
    method: str = "t",
    estimate: float | None = None,
    se: float | None = None,
    df: float | None = None,
    alpha_difference: float | None = None,
    no_interval: str | None = None,
) -> dict:
    """Two one-sided tests (TOST) of equivalence of a mean paired difference within ±``margin``.

    H0 is |δ| ≥ m; equivalence is claimed when both one-sided nulls, δ ≤ −m and δ ≥ m, are rejected at
    ``alpha``, which is the same as the (1 − 2·alpha) interval (90% by default) lying inside (−m, m).

    Two forms:

    - ``method="t"``: t tests of the estimate against −m (alternative "greater") and +m (alternative "less"), the
      90% t interval, and the two-sided t test against 0 for "different". Either from ``values``, independent
      observations of the difference (one-sample t tests of their mean, n − 1 degrees of freedom), or from
      ``estimate``, its ``se`` and ``df`` (``values`` then unused), as ``paired_effects`` gives them on the folds:
      the t form of a grid is on its folds (F − 1 degrees of freedom), not on scenario means, which share the
      folds' patients and are not independent.
    - ``method="bootstrap"``: ``values`` are bootstrap replicates of the estimate (``paired_effects``'s draws)
      and ``estimate`` the point estimate; the one-sided P values are the shares of replicates at or below −m
      and at or above +m, the 90% interval their percentile interval (equivalent iff it lies within (−m, m)),
      and "different" means the two-sided (1 − alpha) percentile interval excludes 0.

    "Different" is the two-sided test of 0 at ``alpha_difference`` (default ``alpha``).

    The verdict: "equivalent within m" when TOST rejects (even if the difference is also nonzero: it is then a
    real but smaller-than-m difference); else "different" when the two-sided test rejects 0; else "inconclusive".

    No verdict, under the minimum-units rule (``stats.too_few``): with fewer than 3 folds (t form: ``values`` or
    ``df`` + 1), with folds or replicates that agree exactly (no spread), or when ``no_interval`` (the estimate's
    own reason, e.g. ``paired_effects``' row's) is given: every P value and the interval NaN, ``equivalent``
    False, ``no_interval`` the reason and ``verdict`` it in words ("no verdict (2 folds: fewer than 3)").

    Returns:
        {"method", "estimate", "margin", "n", "p_lower" (H0 δ ≤ −m), "p_upper" (H0 δ ≥ m), "p" (the larger),
        "low", "high" (the 1 − 2·alpha interval), "p_difference" (two-sided, t form; NaN for the bootstrap),
        "equivalent", "verdict", "no_interval" (None, or why there is no verdict)}.
    """
    from scipy import stats

    if not margin > 0:
        raise ValueError(f"The equivalence margin must be positive. Received: margin={margin!r}")
    if method not in ("t", "bootstrap"):
        raise ValueError(f"Unknown TOST method. Expected 't' or 'bootstrap'. Received: method={method!r}")
    if method == "t" and se is not None:
        result = _tost_t(estimate, se, df, margin, alpha, alpha_difference or alpha)
        return _no_verdict(result, no_interval) if no_interval else result
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if method == "t":
        if len(values) < 2 or np.all(values == values[0]):
            mean = float(values.mean()) if len(values) else math.nan
            result = _tost_t(mean, math.nan, math.nan, margin, alpha, alpha_difference or alpha)
            result["n"] = int(len(values))
            reason = too_few(len(values), "fold") or no_spread(len(values), "fold")
            return _no_verdict(result, no_interval or reason)
        estimate = float(values.mean())
        result = _tost_t(estimate, stats.sem(values), len(values) - 1, margin, alpha, alpha_difference or alpha)
        return _no_verdict(result, no_interval) if no_interval else result
    if estimate is None:
        raise ValueError("tost(method='bootstrap') needs the point estimate: estimate=...")
    if len(values) and np.all(values == values[0]) and not no_interval:
        no_interval = "no interval (the replicates agree exactly: no spread to estimate from)"
    if not len(values):
        p_lower = p_upper = low = high = math.nan
        different = False
    else:
        p_lower = bootstrap_p(int(np.sum(values <= -margin)), len(values))
        p_upper = bootstrap_p(int(np.sum(values >= margin)), len(values))
        low, high = (float(q) for q in np.quantile(values, [alpha, 1 - alpha]))
        two_sided = alpha_difference or alpha
        two_low, two_high = np.quantile(values, [two_sided / 2, 1 - two_sided / 2])
        different = bool(two_low > 0 or two_high < 0)
    result = {"method": method, "margin": float(margin), "n": int(len(values)), "p_difference": math.nan}
    result = _verdict(result, estimate, p_lower, p_upper, low, high, different, alpha)
    return _no_verdict(result, no_interval) if no_interval else result


def _no_verdict(result: dict, reason: str) -> dict:
    """``result`` without a test: its P values and interval NaN, not equivalent, and why ("no verdict (...)")."""
    nan = math.nan
    result.update(p_lower=nan, p_upper=nan, p=nan, low=nan, high=nan, p_difference=nan, equivalent=False)
    result["no_interval"] = reason
    result["verdict"] = reason.replace("no interval", "no verdict", 1)
    return result


def _tost_t(estimate, se, df, margin, alpha, alpha_difference) -> dict:
    """The t form of ``tost`` from an estimate, its SE and degrees of freedom (NaN when they give no test; no
    verdict under the minimum-units rule: fewer than 3 folds, or a zero SE)."""
    from scipy import stats

    result = {"method": "t", "margin": float(margin), "p_difference": math.nan}
    usable = all(v is not None and math.isfinite(v) for v in (estimate, se, df)) and se > 0 and df >= 1
    result["n"] = int(df) + 1 if df is not None and math.isfinite(df) else 0
    estimate = math.nan if estimate is None else estimate
    if df is not None and math.isfinite(df) and too_few(int(df) + 1, "fold"):
        return _no_verdict(_verdict(result, estimate, *[math.nan] * 4, False, alpha), too_few(int(df) + 1, "fold"))
    if se is not None and se == 0 and df is not None and math.isfinite(df):
        return _no_verdict(_verdict(result, estimate, *[math.nan] * 4, False, alpha), no_spread(int(df) + 1, "fold"))
    if not usable:
        nan = math.nan
        return _verdict(result, estimate, nan, nan, nan, nan, False, alpha)
    p_lower = float(stats.t.sf((estimate + margin) / se, df))  # H0 δ ≤ −m
    p_upper = float(stats.t.cdf((estimate - margin) / se, df))  # H0 δ ≥ m
    half = float(stats.t.ppf(1 - alpha, df)) * se
    result["p_difference"] = float(2 * stats.t.sf(abs(estimate) / se, df))
    different = result["p_difference"] < alpha_difference
    return _verdict(result, estimate, p_lower, p_upper, estimate - half, estimate + half, different, alpha)


def _verdict(result, estimate, p_lower, p_upper, low, high, different, alpha) -> dict:
    p = max(p_lower, p_upper) if math.isfinite(p_lower) and math.isfinite(p_upper) else math.nan
    equivalent = bool(math.isfinite(p) and p < alpha)
    verdict = "equivalent within m" if equivalent else ("different" if different else "inconclusive")
    result.update(
        {
            "estimate": float(estimate),
            "p_lower": p_lower,
            "p_upper": p_upper,
            "p": p,
            "low": float(low),
            "high": float(high),
            "equivalent": equivalent,
            "verdict": verdict,
            "no_interval": None,
        }
    )
    return result


def equivalence(row, draws, margin: float, alpha: float = 0.025) -> dict:
    """Both forms of TOST for one row of ``paired_effects`` (a scenario's, or a grid's "overall"), as the report
    gives them: equivalence within ±m when the 95% interval lies inside (−m, m) (each one-sided test at
    ``alpha`` = 2.5%), "different" when it excludes 0.

    Why 2.5% and not the common 5% (the 90% interval): the spread of a paired AUC difference grows with the
    difference itself, so the fold-level SE is smallest where the estimate falls low, and the one-sided test at the
    upper margin rejects too often: at 5% it said "equivalent" 5.2–6.3% of the time with the margin at the true
    difference (3, 5 and 10 folds × 1, 3 and 5 repeats; 4,000 simulated grids each), at 2.5% 2.7–3.5%
    (docs/reproduce.md).

    Args:
        row: the row (a mapping with diff, se, df).
        draws: its replicates (``paired_effects(..., return_draws=True)``).
        margin: the equivalence margin m.
        alpha: each one-sided test's level (the 1 − 2·alpha interval must lie within ±m); "different" is the
            two-sided test at 2·alpha.

    Returns:
        {"bootstrap": ``tost`` of the replicates (the bootstrap-t interval with two or more folds; the patient
        bootstrap's percentile interval with one), "t": ``tost``'s t form on the folds (estimate, fold-level SE,
        F − 1 degrees of freedom; no test with one fold: NaN P, verdict "no verdict (one fold: ...)")}; neither
        gives a verdict under the minimum-units rule (``stats.too_few``: the row's ``no_interval``, or fewer than 3
        folds for the t form), and both then say why (``no_interval``, and the verdict).
    """
    reason = row.get("no_interval") if hasattr(row, "get") else None
    reason = reason if isinstance(reason, str) and reason else None  # a NaN cell of a table: none
    common = {"alpha": alpha, "alpha_difference": 2 * alpha, "estimate": float(row["diff"])}
    boot = tost(draws, margin, method="bootstrap", no_interval=reason, **common)
    by_t = tost(None, margin, method="t", se=row["se"], df=row["df"], **common)
    if not (by_t["n"] >= 2):
        by_t = _no_verdict(by_t, "no interval (one fold: no t test on the folds)")
    return {"bootstrap": boot, "t": by_t}
