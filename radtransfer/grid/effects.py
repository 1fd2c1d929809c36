"""Paired effects of one weight source over another across a grid: the mean paired AUC difference with a
two-level bootstrap interval, equivalence tests (TOST), a mixed-effects model, and the practitioner's estimate.

Runs are paired when they share the grid, scenario, fold and repeat (records without a ``repeat`` column count as
repeat 0). Only pairs whose two runs have a finite AUC (finished, or diverged with a checkpoint) count.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..evaluation.stats import _units, auc_score
from ..utils.optional import require
from .records import PREDICTIONS, RECORD_FILE, RunRecord

PAIR_KEYS = ["grid", "scenario", "fold", "repeat"]
CHUNK = 2_000_000  # resampled image weights held at once per run (bounds the bootstrap's memory)


def _with_repeat(records):
    """The records with a ``repeat`` column (0 where the grid has none, or a cell is empty)."""
    records = records.copy()
    if "repeat" not in records.columns:
        records["repeat"] = 0
    records["repeat"] = records["repeat"].fillna(0).astype(int)
    return records


def paired_runs(records, candidate: str = "radimagenet", reference: str = "imagenet"):
    """One row per pair of runs of the two sources with the same grid, scenario, fold and repeat, both with a
    finite AUC: grid, task, backbone, strategy, learning_rate, scenario, fold, repeat, auc_candidate,
    auc_reference, diff (candidate − reference), path_candidate, path_reference."""
    records = _with_repeat(records)
    valid = records[records["status"].isin(("finished", "diverged")) & np.isfinite(records["auc"].astype(float))]
    keep = [*PAIR_KEYS, "task", "backbone", "strategy", "learning_rate", "auc", "path"]
    a = valid[valid["source"] == candidate][keep]
    b = valid[valid["source"] == reference][[*PAIR_KEYS, "auc", "path"]]
    pairs = a.merge(b, on=PAIR_KEYS, suffixes=("_candidate", "_reference"))
    pairs["diff"] = pairs["auc_candidate"].astype(float) - pairs["auc_reference"].astype(float)
    return pairs.sort_values(PAIR_KEYS, kind="stable").reset_index(drop=True)


# -- AUCs of weighted (resampled) test sets ----------------------------------------------------------------


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


def _weighted_auc_score(y_true, probabilities, weights, positive_class=1):
    """``stats.auc_score`` (positive-class AUC, or macro one-vs-rest for more classes) under each weighting."""
    num_classes = probabilities.shape[1]
    if num_classes == 2:
        return weighted_aucs(y_true == positive_class, probabilities[:, positive_class], weights)
    per_class = [weighted_aucs(y_true == c, probabilities[:, c], weights) for c in range(num_classes)]
    return np.mean(per_class, axis=0)


class _PairData:
    """A pair's test predictions: labels, both sources' probabilities, and the resampling units."""

    def __init__(self, candidate_dir, reference_dir):
        a = np.load(Path(candidate_dir) / PREDICTIONS)
        b = np.load(Path(reference_dir) / PREDICTIONS)
        if not np.array_equal(a["y_true"], b["y_true"]):
            raise ValueError(
                f"The runs in {candidate_dir} and {reference_dir} were not scored on the same test images."
            )
        self.y = np.asarray(a["y_true"])
        self.p_a = np.asarray(a["probabilities"], dtype=np.float64)
        self.p_b = np.asarray(b["probabilities"], dtype=np.float64)
        groups = a["patient_ids"] if "patient_ids" in a.files and len(a["patient_ids"]) else None
        members, strata, self.unit, self.n_units = _units(self.y, groups)
        self.strata = strata
        self.unit_of_image = np.empty(len(self.y), dtype=np.int64)
        for u, images in enumerate(members):
            self.unit_of_image[images] = u

    def diff(self) -> float:
        return auc_score(self.y, self.p_a) - auc_score(self.y, self.p_b)

    def resampled_diffs(self, count: int, rng) -> np.ndarray:
        """``count`` independent stratified resamples of the units: AUC(candidate) − AUC(reference) on each,
        both sources scored on the same resampled units."""
        out = np.empty(count)
        step = max(1, CHUNK // max(1, len(self.y)))
        for start in range(0, count, step):
            size = min(step, count - start)
            # Units drawn with replacement within each class, as many as the class has; a unit's weight is how
            # often it was drawn.
            drawn = np.concatenate([s[rng.integers(0, len(s), (size, len(s)))] for s in self.strata], axis=1)
            flat = (drawn + self.n_units * np.arange(size)[:, None]).ravel()
            unit_weights = np.bincount(flat, minlength=size * self.n_units).reshape(size, self.n_units)
            weights = unit_weights[:, self.unit_of_image].astype(np.float64)
            out[start : start + size] = _weighted_auc_score(self.y, self.p_a, weights) - _weighted_auc_score(
                self.y, self.p_b, weights
            )
        return out


def _read_pair(folders) -> "_PairData | None":
    """A pair's predictions, or None (with a warning when they exist but do not match) to keep its recorded AUCs."""
    if not all((Path(f) / PREDICTIONS).exists() for f in folders):
        return None
    try:
        return _PairData(*folders)
    except ValueError as exc:
        import warnings

        warnings.warn(f"Recorded AUCs used, test patients not resampled: {exc}", stacklevel=3)
        return None


def paired_effects(
    records,
    candidate: str = "radimagenet",
    reference: str = "imagenet",
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    return_draws: bool = False,
):
    """Mean paired AUC difference (candidate − reference) per scenario and overall, with a two-level bootstrap
    interval and the win count.

    Pairs are the two sources' runs with the same grid, scenario, fold and repeat (``paired_runs``). Each
    pair's observed difference is AUC(candidate) − AUC(reference) from the runs' ``predictions.npz`` (the
    recorded AUCs where a run has no predictions). A scenario's estimate is the mean difference over its pairs;
    the overall estimate is the unweighted mean of the scenario estimates (the scenarios are fixed: the grid's
    own, not a sample).

    What the bootstrap resamples, per replicate and independently for each scenario:

    1. the scenario's pairs (folds × repeats), drawn with replacement, as many as it has;
    2. for each pair so drawn (each occurrence separately), its test patients (images when the predictions have
       no patient ids), with replacement within each class (a patient's class being the majority label of its
       images, as ``stats.bootstrap_auc_ci``), and both sources' AUCs recomputed on the same resampled patients.
       A pair without saved predictions (or whose two runs' test labels differ, with a warning) keeps its recorded
       difference (only step 1 varies it).

    The replicate's scenario estimate is the mean over its drawn pairs; its overall estimate the mean over
    scenarios. Intervals are percentile intervals of the replicates. Draws come from
    ``numpy.random.default_rng(seed)``, scenario by scenario in sorted order, so results are deterministic.

    Args:
        records: ``load_records``'s DataFrame (a ``repeat`` column is optional).
        candidate, reference: the weight sources compared.
        n: bootstrap replicates.
        seed: the resampling seed.
        level: the confidence level of the intervals.
        return_draws: also return the replicates, ``{(grid, scenario): (n,) array}`` with ``(grid, "overall")``.

    Returns:
        A DataFrame with one row per (grid, scenario) and one per grid with scenario "overall": grid, task,
        scenario, backbone, strategy, learning_rate, n_pairs, n_with_predictions, diff, low, high, se (the
        replicates' SD), wins (pairs where the candidate's AUC is higher), losses, ties, unit; and the draws when
        asked for.
    """
    import pandas as pd

    pairs = paired_runs(records, candidate, reference)
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2
    rows, draws = [], {}

    def summary(values, estimate):
        values = values[np.isfinite(values)]
        if not len(values):
            return {"diff": estimate, "low": math.nan, "high": math.nan, "se": math.nan}
        low, high = np.quantile(values, [tail, 1 - tail])
        sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        return {"diff": estimate, "low": float(low), "high": float(high), "se": sd}

    for grid, in_grid in pairs.groupby("grid", sort=True):
        scenario_draws, scenario_estimates, units = [], [], set()
        for scenario, group in in_grid.groupby("scenario", sort=True):
            group = group.reset_index(drop=True)
            observed = group["diff"].to_numpy(dtype=float, copy=True)
            data = []
            for i, row in enumerate(group.itertuples(index=False)):
                folders = (Path(row.path_candidate), Path(row.path_reference))
                pair = _read_pair(folders)
                data.append(pair)
                if pair is not None:
                    observed[i] = pair.diff()
                    units.add(pair.unit)
            k = len(group)
            chosen = rng.integers(0, k, size=(n, k))
            resampled = np.empty((n, k))
            for i, pair in enumerate(data):
                slots = chosen == i
                count = int(slots.sum())
                if count:
                    resampled[slots] = observed[i] if pair is None else pair.resampled_diffs(count, rng)
            replicate = resampled.mean(axis=1)
            estimate = float(observed.mean())
            scenario_draws.append(replicate)
            scenario_estimates.append(estimate)
            draws[(grid, scenario)] = replicate
            first = group.iloc[0]
            rows.append(
                {
                    "grid": grid,
                    "task": first["task"],
                    "scenario": scenario,
                    "backbone": first["backbone"],
                    "strategy": first["strategy"],
                    "learning_rate": first["learning_rate"],
                    "n_pairs": k,
                    "n_with_predictions": sum(d is not None for d in data),
                    **summary(replicate, estimate),
                    "wins": int((observed > 0).sum()),
                    "losses": int((observed < 0).sum()),
                    "ties": int((observed == 0).sum()),
                    "unit": ", ".join(sorted({d.unit for d in data if d is not None})) or None,
                }
            )
        overall = np.mean(scenario_draws, axis=0)
        draws[(grid, "overall")] = overall
        mine = [r for r in rows if r["grid"] == grid]
        rows.append(
            {
                "grid": grid,
                "task": in_grid["task"].iloc[0],
                "scenario": "overall",
                "backbone": None,
                "strategy": None,
                "learning_rate": np.nan,
                "n_pairs": int(sum(r["n_pairs"] for r in mine)),
                "n_with_predictions": int(sum(r["n_with_predictions"] for r in mine)),
                **summary(overall, float(np.mean(scenario_estimates))),
                "wins": int(sum(r["wins"] for r in mine)),
                "losses": int(sum(r["losses"] for r in mine)),
                "ties": int(sum(r["ties"] for r in mine)),
                "unit": ", ".join(sorted(units)) or None,
            }
        )
    columns = [
        "grid",
        "task",
        "scenario",
        "backbone",
        "strategy",
        "learning_rate",
        "n_pairs",
        "n_with_predictions",
        "diff",
        "low",
        "high",
        "se",
        "wins",
        "losses",
        "ties",
        "unit",
    ]
    table = pd.DataFrame(rows, columns=columns)
    return (table, draws) if return_draws else table


# -- equivalence -----------------------------------------------------------------------------------------


def tost(values, margin: float, alpha: float = 0.05, method: str = "t", estimate: float | None = None) -> dict:
    """Two one-sided tests (TOST) of equivalence of a mean paired difference within ±``margin``.

    H0 is |δ| ≥ m; equivalence is claimed when both one-sided nulls, δ ≤ −m and δ ≥ m, are rejected at
    ``alpha``, which is the same as the (1 − 2·alpha) interval (90% by default) lying inside (−m, m).

    Two forms:

    - ``method="t"``: ``values`` are observed paired differences (e.g. the per-scenario mean differences);
      one-sample t tests of their mean against −m (alternative "greater") and +m (alternative "less"), the
      90% t interval, and the two-sided t test against 0 for "different".
    - ``method="bootstrap"``: ``values`` are bootstrap replicates of the estimate (``paired_effects``'s draws)
      and ``estimate`` the point estimate; the one-sided P values are the shares of replicates at or below −m
      and at or above +m, the 90% interval their percentile interval (equivalent iff it lies within (−m, m)),
      and "different" means the two-sided (1 − alpha) percentile interval excludes 0.

    The verdict: "equivalent within m" when TOST rejects (even if the difference is also nonzero: it is then a
    real but smaller-than-m difference); else "different" when the two-sided test rejects 0; else "inconclusive".

    Returns:
        {"method", "estimate", "margin", "n", "p_lower" (H0 δ ≤ −m), "p_upper" (H0 δ ≥ m), "p" (the larger),
        "low", "high" (the 1 − 2·alpha interval), "p_difference" (two-sided, t form; NaN for the bootstrap),
        "equivalent", "verdict"}.
    """
    from scipy import stats

    if not margin > 0:
        raise ValueError(f"The equivalence margin must be positive. Received: margin={margin!r}")
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    result = {"method": method, "margin": float(margin), "n": int(len(values)), "p_difference": math.nan}
    if method == "t":
        estimate = float(values.mean()) if len(values) else math.nan
        if len(values) < 2 or np.all(values == values[0]):
            p_lower = p_upper = low = high = math.nan
        else:
            p_lower = float(stats.ttest_1samp(values, -margin, alternative="greater").pvalue)
            p_upper = float(stats.ttest_1samp(values, margin, alternative="less").pvalue)
            se = values.std(ddof=1) / math.sqrt(len(values))
            half = float(stats.t.ppf(1 - alpha, len(values) - 1)) * se
            low, high = estimate - half, estimate + half
            result["p_difference"] = float(stats.ttest_1samp(values, 0.0).pvalue)
        different = result["p_difference"] < alpha
    elif method == "bootstrap":
        if estimate is None:
            raise ValueError("tost(method='bootstrap') needs the point estimate: estimate=...")
        if not len(values):
            p_lower = p_upper = low = high = math.nan
            different = False
        else:
            p_lower = float(np.mean(values <= -margin))
            p_upper = float(np.mean(values >= margin))
            low, high = (float(q) for q in np.quantile(values, [alpha, 1 - alpha]))
            two_low, two_high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
            different = bool(two_low > 0 or two_high < 0)
    else:
        raise ValueError(f"Unknown TOST method. Expected 't' or 'bootstrap'. Received: method={method!r}")
    p = max(p_lower, p_upper) if math.isfinite(p_lower) and math.isfinite(p_upper) else math.nan
    equivalent = bool(math.isfinite(p) and p < alpha)
    verdict = "equivalent within m" if equivalent else ("different" if different else "inconclusive")
    result.update(
        {
            "estimate": float(estimate),
            "p_lower": p_lower,
            "p_upper": p_upper,
            "p": p,
            "low": low,
            "high": high,
            "equivalent": equivalent,
            "verdict": verdict,
        }
    )
    return result


# -- the mixed model and the practitioner's estimate -----------------------------------------------------


def mixed_model_frame(records, candidate: str = "radimagenet", reference: str = "imagenet"):
    """The runs the mixed model fits, one grid's or several: valid runs of the two sources with columns auc,
    source (the reference as the baseline level), backbone, strategy, fold, repeat, and ``group`` ("fold:repeat",
    with the grid's name in front when there are several grids)."""
    records = _with_repeat(records)
    valid = records[
        records["source"].isin((candidate, reference))
        & records["status"].isin(("finished", "diverged"))
        & np.isfinite(records["auc"].astype(float))
    ].copy()
    valid["auc"] = valid["auc"].astype(float)
    prefix = valid["grid"].astype(str) + "/" if valid["grid"].nunique() > 1 else ""
    valid["group"] = prefix + valid["fold"].astype(str) + ":" + valid["repeat"].astype(str)
    columns = ["grid", "auc", "source", "backbone", "strategy", "learning_rate", "scenario", "fold", "repeat", "group"]
    return valid[columns].reset_index(drop=True)


MIXED_FORMULA = "auc ~ C(source, Treatment(reference={reference!r})) + C(backbone) + C(strategy)"


def mixed_model(records, candidate: str = "radimagenet", reference: str = "imagenet", level: float = 0.95) -> dict:
    """A linear mixed model of the runs' AUCs (statsmodels MixedLM, the ``stats`` extra):
    ``auc ~ C(source) + C(backbone) + C(strategy)`` with a random intercept per group, a group being one
    (fold, repeat): the runs of every source and scenario that share a fold and a repeat share its test patients,
    so their AUCs move together. Repeats are folded into the grouping (fold:repeat) rather than fitted as a
    separate variance component: with few folds and repeats, a second component is rarely identifiable. The
    learning rate is not a fixed effect (the paper's grid ties it to the strategy), so its effect is left in the
    residual. Fitted by REML (statsmodels' default).

    Returns:
        {"effect" (the candidate's coefficient, AUC points), "se", "low", "high" (Wald interval at ``level``), "p",
        "n_runs", "n_groups", "formula", "converged"}.
    """
    smf = require("statsmodels.formula.api", "stats", "The mixed-effects model of the grid", package="statsmodels")
    import warnings

    frame = mixed_model_frame(records, candidate, reference)
    formula = MIXED_FORMULA.format(reference=reference)
    empty = {"effect": math.nan, "se": math.nan, "low": math.nan, "high": math.nan, "p": math.nan}
    base = {"n_runs": len(frame), "n_groups": int(frame["group"].nunique()), "formula": formula}
    if frame["source"].nunique() < 2 or frame["group"].nunique() < 2:
        return {**empty, **base, "converged": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm(formula, frame, groups=frame["group"]).fit()
    name = f"C(source, Treatment(reference={reference!r}))[T.{candidate}]"
    low, high = fit.conf_int(alpha=1 - level).loc[name]
    return {
        "effect": float(fit.params[name]),
        "se": float(fit.bse[name]),
        "low": float(low),
        "high": float(high),
        "p": float(fit.pvalues[name]),
        **base,
        "converged": bool(fit.converged),
    }


def best_val_losses(records):
    """The records with ``best_val_loss`` read from each run's record.json (NaN where not recorded)."""
    records = records.copy()
    if "best_val_loss" not in records.columns:
        losses = []
        for path in records["path"]:
            file = Path(path) / RECORD_FILE
            loss = RunRecord.read(file).best_val_loss if file.exists() else None
            losses.append(math.nan if loss is None else float(loss))
        records["best_val_loss"] = losses
    return records


def practitioner(records):
    """The practitioner's estimate: in each (grid, source, fold, repeat), the scenario with the lowest best
    validation loss (the checkpointing criterion: no test data used) is chosen and scored by its test AUC; the
    estimate is the mean over folds and repeats.

    Returns:
        A DataFrame with one row per (grid, source): n_selections, auc (mean test AUC of the chosen runs), sd,
        and chosen (the scenarios chosen, most often first).
    """
    import pandas as pd

    records = best_val_losses(_with_repeat(records))
    valid = records[
        records["status"].isin(("finished", "diverged"))
        & np.isfinite(records["auc"].astype(float))
        & np.isfinite(records["best_val_loss"].astype(float))
    ]
    rows = []
    for (grid, source), runs in valid.groupby(["grid", "source"], sort=True):
        best = runs.loc[runs.groupby(["fold", "repeat"])["best_val_loss"].idxmin()]
        aucs = best["auc"].astype(float)
        rows.append(
            {
                "grid": grid,
                "source": source,
                "n_selections": len(best),
                "auc": float(aucs.mean()),
                "sd": float(aucs.std(ddof=1)) if len(aucs) > 1 else math.nan,
                "chosen": ", ".join(best["scenario"].value_counts().index),
            }
        )
    return pd.DataFrame(rows, columns=["grid", "source", "n_selections", "auc", "sd", "chosen"])
