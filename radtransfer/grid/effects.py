"""Paired effects of one weight source over another across a grid: the mean paired AUC difference with an interval
that follows the grid's design, a mixed model of the paired differences, and the practitioner's estimate (the
equivalence tests of the effect, TOST, are in ``grid.equivalence``).

Runs are paired when they share the grid, scenario, fold and repeat (records without a ``repeat`` column count as
repeat 0). Only pairs whose two runs have a finite AUC (finished, or diverged with a checkpoint) count.

**The design, and the unit of every interval: the fold.** Every run of a fold (every scenario, repeat and source)
is scored on the fold's test patients, and a fold's repeats share its training set; in k-fold cross-validation the
folds' test parts are disjoint sets of patients. So the pairs of a fold move together (with its test patients and
its training set) and are not independent draws, while the folds are treated as independent units. Resampling
pairs or scenarios as if they were independent, or adding the test patients' sampling error to a fold-to-fold spread
that already holds it, gives intervals that cover far less than they claim (overall 95% intervals covering 0.58 at 5
repeats in a simulation with a known truth; docs/reproduce.md).

The folds are treated as independent although in k-fold cross-validation their training sets overlap: that makes
them positively correlated, a variance that no estimate from a single cross-validation can see (Bengio & Grandvalet,
2004), so with many folds the intervals are somewhat narrow.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..stats.auc import auc_score, weighted_auc_score
from ..stats.bootstrap import no_spread, resampling_units, too_few, units_by_stratum
from ..utils.optional import require
from ..utils.seeding import derive_seed
from .records import RECORD_FILE, GridResults, RunRecord, read_predictions

PAIR_KEYS = ["grid", "scenario", "fold", "repeat"]
CHUNK = 2_000_000  # resampled image weights held at once per test set (bounds the bootstrap's memory)
T_OVER_FOLDS = "t over folds"
PATIENT_BOOTSTRAP = "bootstrap over test patients"
COVERS_FOLDS = "training sets, seeds and test patients"
COVERS_PATIENTS = "test patients only (one fold: the training set's and the seeds' variation not included)"


def _table(records):
    """The records table of ``records``: a DataFrame as given, a GridResults' ``records``."""
    return records.records if isinstance(records, GridResults) else records


def _with_repeat(records):
    """The records with a ``repeat`` column (0 where the grid has none, or a cell is empty)."""
    records = _table(records).copy()
    if "repeat" not in records.columns:
        records["repeat"] = 0
    records["repeat"] = records["repeat"].fillna(0).astype(int)
    return records


def paired_runs(records, candidate: str = "radimagenet", reference: str = "imagenet"):
    """One row per pair of runs of the two sources with the same grid, scenario, fold and repeat, both with a
    finite AUC: grid, task, backbone, strategy, learning_rate, scenario, fold, repeat, auc_candidate,
    auc_reference, diff (candidate − reference), path_candidate, path_reference.

    ``records``: ``load_records``'s table, or a ``GridResults``."""
    records = _with_repeat(records)
    valid = records[records["status"].isin(("finished", "diverged")) & np.isfinite(records["auc"].astype(float))]
    keep = [*PAIR_KEYS, "task", "backbone", "strategy", "learning_rate", "auc", "path"]
    a = valid[valid["source"] == candidate][keep]
    b = valid[valid["source"] == reference][[*PAIR_KEYS, "auc", "path"]]
    pairs = a.merge(b, on=PAIR_KEYS, suffixes=("_candidate", "_reference"))
    pairs["diff"] = pairs["auc_candidate"].astype(float) - pairs["auc_reference"].astype(float)
    return pairs.sort_values(PAIR_KEYS, kind="stable").reset_index(drop=True)


class _PairData:
    """A pair's test predictions: labels, both sources' probabilities and the patient ids (None without)."""

    def __init__(self, a, b, candidate_dir, reference_dir):
        if not np.array_equal(a["y_true"], b["y_true"]):
            raise ValueError(
                f"The runs in {candidate_dir} and {reference_dir} were not scored on the same test images."
            )
        self.y = np.asarray(a["y_true"])
        self.p_a = np.asarray(a["probabilities"], dtype=np.float64)
        self.p_b = np.asarray(b["probabilities"], dtype=np.float64)
        groups = a["patient_ids"] if "patient_ids" in a and len(a["patient_ids"]) else None
        self.groups = None if groups is None else np.asarray([str(g) for g in groups])
        # Runs scored on the same test images (labels and patients, in order) share their resampling units.
        self.test_key = (self.y.tobytes(), None if self.groups is None else "\x1f".join(self.groups))

    def diff(self) -> float:
        return auc_score(self.y, self.p_a) - auc_score(self.y, self.p_b)

    def resampled_diffs(self, weights) -> np.ndarray:
        """AUC(candidate) − AUC(reference) under each row of image weights (both sources on the same resample)."""
        return weighted_auc_score(self.y, self.p_a, weights) - weighted_auc_score(self.y, self.p_b, weights)


def _read_pair(folders, read) -> "_PairData | None":
    """A pair's predictions (each run's read by ``read``, ``read_predictions`` or ``GridResults.predictions``), or
    None (with a warning when they exist but do not match) to keep its recorded AUCs."""
    a = read(folders[0])
    b = read(folders[1]) if a is not None else None
    if a is None or b is None:
        return None
    try:
        return _PairData(a, b, *folders)
    except ValueError as exc:
        import warnings

        warnings.warn(f"Recorded AUCs used, test patients not resampled: {exc}", stacklevel=4)
        return None


class _TestSet:
    """The resampling units of one test set: its patients (its images when patients are unknown), drawn with
    replacement within each class, as many as the class has (a patient's class is the majority label of its images,
    as in ``stats.bootstrap_auc_ci``)."""

    def __init__(self, y, groups):
        members, self.strata, self.unit, self.n_units = resampling_units(y, groups)
        self.smallest = min(units_by_stratum(y, groups).values())  # units of its smallest class (stats.too_few)
        self.n_images = len(y)
        self.unit_of_image = np.empty(len(y), dtype=np.int64)
        for u, images in enumerate(members):
            self.unit_of_image[images] = u

    def weights(self, size: int, rng) -> np.ndarray:
        """(size, images) weights: how often each image's unit was drawn in each of ``size`` resamples."""
        drawn = np.concatenate([s[rng.integers(0, len(s), (size, len(s)))] for s in self.strata], axis=1)
        flat = (drawn + self.n_units * np.arange(size)[:, None]).ravel()
        unit_weights = np.bincount(flat, minlength=size * self.n_units).reshape(size, self.n_units)
        return unit_weights[:, self.unit_of_image].astype(np.float64)


class _Fold:
    """The pairs of one fold: their observed differences, and resampled differences in which every pair scored on
    the fold's test images (every scenario and repeat) is rescored on the same draw of its patients."""

    def __init__(self, scenarios, diffs, candidate_dirs, reference_dirs, read):
        self.scenarios = np.asarray(scenarios)
        self.observed = np.array(diffs, dtype=float)
        self.data, self.tests = [], {}
        self.units = [None] * len(self.observed)  # each pair's resampling unit (None: no predictions)
        for i, (candidate_dir, reference_dir) in enumerate(zip(candidate_dirs, reference_dirs)):
            pair = _read_pair((candidate_dir, reference_dir), read)
            self.data.append(pair)
            if pair is None:
                continue
            self.observed[i] = pair.diff()
            if pair.test_key not in self.tests:  # one test set per fold in a grid; hand-made records may hold more
                self.tests[pair.test_key] = (_TestSet(pair.y, pair.groups), [])
            test, members = self.tests[pair.test_key]
            members.append(i)
            self.units[i] = test.unit

    def smallest_units(self, scenario=None) -> tuple:
        """(units, unit) of the smallest class over the test sets its pairs (of one scenario, or all) are scored on:
        what the minimum-units rule judges a bootstrap of its test patients by; (None, None) without predictions."""
        found = [
            (test.smallest, test.unit)
            for test, members in self.tests.values()
            if any(scenario in (None, self.scenarios[i]) for i in members)
        ]
        return min(found) if found else (None, None)

    def units_of(self, scenario=None) -> list:
        """The resampling units of the pairs with predictions (of one scenario, or all)."""
        return [u for u, s in zip(self.units, self.scenarios) if u is not None and scenario in (None, s)]

    def resampled(self, count: int, rng) -> np.ndarray:
        """(count, pairs) differences, one draw of the test patients per row shared by all the pairs scored on them;
        pairs without predictions keep their recorded difference."""
        out = np.tile(self.observed, (count, 1))
        for test, members in self.tests.values():
            step = max(1, CHUNK // max(1, test.n_images))
            for start in range(0, count, step):
                size = min(step, count - start)
                weights = test.weights(size, rng)
                for i in members:
                    out[start : start + size, i] = self.data[i].resampled_diffs(weights)
        return out


def _fold_statistics(sums, counts):
    """Estimates with fold-level standard errors, from the sums (..., folds, scenarios) and counts of paired
    differences per fold and scenario.

    A scenario's estimate is the mean of its paired differences, the overall one the mean over scenarios. Each
    fold's contribution (its influence: the linearised estimator's term of that fold) is computed, and the SE is
    sqrt(F/(F−1) · Σ contribution²) over the F folds that hold pairs: with every fold holding the same pairs this is
    the SD of the fold means over √F, the one-sample t test's SE on the folds.

    Returns:
        (scenario estimates, their SEs, their numbers of folds), each (..., scenarios); (overall estimate, its SE,
        its number of folds), each (...). NaN where a scenario has no pair.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        total = counts.sum(axis=-2)
        by_scenario = sums.sum(axis=-2) / total
        contribution = (sums - by_scenario[..., None, :] * counts) / total[..., None, :]
        folds_s = (counts > 0).sum(axis=-2)
        se_s = np.sqrt(folds_s / (folds_s - 1) * (contribution**2).sum(axis=-2))
        overall = by_scenario.mean(axis=-1)
        folds = (counts > 0).any(axis=-1).sum(axis=-1)
        se = np.sqrt(folds / (folds - 1) * (contribution.mean(axis=-1) ** 2).sum(axis=-1))
    return by_scenario, se_s, folds_s, overall, se, folds


def _interval(estimate, se, n_folds, boot_estimate, boot_se, patient_draws, level, resampled, smallest=(None, None)):
    """One row's interval and replicates, with ``no_interval`` (None, or why there is none).

    With two or more folds: the t interval on the folds (estimate ± t(F−1) · SE); the replicates are the
    studentized bootstrap's, on the estimate's scale: estimate − SE · (θ* − estimate) / SE*, so that their
    percentile interval is the bootstrap-t interval. With one fold: the percentile interval of the replicates
    over the test patients (NaN without predictions to resample).

    The minimum-units rule (``stats.too_few``): no interval and no replicates (NaN) with fewer than ``MIN_UNITS``
    folds (two or more), or, with one fold, fewer than ``MIN_UNITS`` test patients (``smallest``: units and unit of
    the test set's smallest class); nor with folds whose differences agree exactly (a zero SE).
    """
    from scipy import stats

    tail = (1 - level) / 2
    if n_folds >= 2:
        reason = too_few(int(n_folds), "fold") or (no_spread(int(n_folds), "fold") if not se > 0 else None)
        if reason:
            row = {"low": math.nan, "high": math.nan, "se": float(se), "n_folds": int(n_folds)}
            row.update(df=float(n_folds - 1), method=T_OVER_FOLDS, covers=COVERS_FOLDS, no_interval=reason)
            return np.full(len(boot_estimate), np.nan), row
        with np.errstate(invalid="ignore", divide="ignore"):
            pivots = (boot_estimate - estimate) / boot_se
        draws = np.where(np.isfinite(pivots), estimate - se * pivots, np.nan)
        half = float(stats.t.ppf(1 - tail, n_folds - 1)) * se
        return draws, {
            "low": float(estimate - half),
            "high": float(estimate + half),
            "se": float(se),
            "n_folds": int(n_folds),
            "df": float(n_folds - 1),
            "method": T_OVER_FOLDS,
            "covers": COVERS_FOLDS,
            "no_interval": None,
        }
    draws = np.asarray(patient_draws, dtype=float)
    finite = draws[np.isfinite(draws)]
    row = {"n_folds": int(n_folds), "df": math.nan, "method": PATIENT_BOOTSTRAP, "covers": COVERS_PATIENTS}
    units, unit = smallest
    reason = NO_PREDICTIONS if not resampled or units is None else too_few(units, unit, where="in the smallest class")
    if reason or not len(finite):
        nan = math.nan
        row.update(low=nan, high=nan, se=nan, no_interval=reason or NO_PREDICTIONS)
        return np.full(len(draws), np.nan), row
    low, high = np.quantile(finite, [tail, 1 - tail])
    sd = float(finite.std(ddof=1)) if len(finite) > 1 else math.nan
    return draws, {**row, "low": float(low), "high": float(high), "se": sd, "no_interval": None}


NO_PREDICTIONS = "no interval (1 fold, and no predictions to resample its test patients)"


EFFECT_COLUMNS = [
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
    "n_folds",
    "df",
    "method",
    "covers",
    "no_interval",
]


def paired_effects(
    records,
    candidate: str = "radimagenet",
    reference: str = "imagenet",
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    return_draws: bool = False,
):
    """Mean paired AUC difference (candidate − reference) per scenario and overall, with an interval whose unit is
    the fold, and the win count.

    Pairs are the two sources' runs with the same grid, scenario, fold and repeat (``paired_runs``). Each
    pair's observed difference is AUC(candidate) − AUC(reference) from the runs' ``predictions.npz`` (the
    recorded AUCs where a run has no predictions). A scenario's estimate is the mean difference over its pairs
    (folds × repeats); the overall estimate is the unweighted mean of the scenario estimates (the scenarios are
    fixed: the grid's own, not a sample).

    The interval, with two or more folds (k-fold cross-validation): every pair of a fold is scored on the fold's
    test patients and its repeats share its training set, so the fold is the independent unit, and the spread of
    the folds' estimates already holds the test patients' sampling error, the training sets' and the seeds'. The
    interval is the t interval on the folds: estimate ± t(F − 1) · SE, the SE from the folds' contributions
    (``se``; with every fold holding the same pairs, the SD of the fold means over √F). With 5 folds a percentile
    bootstrap over 5 units covers far less than it claims (the t quantile with 4 degrees of freedom is 2.78, not
    1.96), and adding the test patients' resampling to it counts their error twice; the t interval is exact for
    normal fold means (its coverage in simulations with a known truth: docs/reproduce.md). A scenario's interval is
    the same, over the folds holding its pairs.

    With a single split (one fold): only the fold's test patients can be resampled: the interval is the percentile
    interval of a bootstrap over them, each replicate drawing the patients once (within class) and rescoring every
    run of the fold (every scenario, repeat and source) on that draw. It holds neither the training set's variation
    nor the seeds' (``covers`` says so): it is an interval for the runs that were trained, not for the training
    procedure.

    The replicates (``return_draws``) come from one bootstrap: each replicate draws F folds with replacement, each
    carrying all its scenarios, repeats and both sources, and each drawn fold's test patients once, shared by all of
    its runs. With two or more folds they are studentized (bootstrap-t: θ* and its fold-level SE* per replicate)
    and given on the estimate's scale, estimate − SE · (θ* − estimate) / SE*, so their percentile interval is the
    bootstrap-t interval (what ``grid.equivalence.tost(method="bootstrap")`` reads); with one fold they are the
    patient bootstrap's estimates. The draws are seeded from (``seed``, grid name), so a grid's numbers do not depend
    on the other grids in ``records``.

    Args:
        records: ``load_records``'s DataFrame (a ``repeat`` column is optional).
        candidate, reference: the weight sources compared.
        n: bootstrap replicates.
        seed: the resampling seed.
        level: the confidence level of the intervals.
        return_draws: also return the replicates, ``{(grid, scenario): (n,) array}`` with ``(grid, "overall")``
            (NaN where a replicate has no estimate).

    Returns:
        A DataFrame with one row per (grid, scenario) and one per grid with scenario "overall": grid, task,
        scenario, backbone, strategy, learning_rate, n_pairs, n_with_predictions, diff, low, high, se (the
        fold-level SE; with one fold, the replicates' SD), wins (pairs where the candidate's AUC is higher),
        losses, ties, unit (patient or image), n_folds, df (F − 1; NaN with one fold), method ("t over folds" or
        "bootstrap over test patients"), covers (what variation the interval holds) and no_interval (None, or why
        there is no interval: the minimum-units rule, ``stats.too_few``, fewer than 3 folds or, with one fold,
        fewer than 3 test patients in a class; or folds that agree exactly; low, high and the draws are then NaN);
        and the draws when asked.
    """
    import pandas as pd

    results = records if isinstance(records, GridResults) else None
    read = results.predictions if results is not None else read_predictions
    pairs = paired_runs(records, candidate, reference)
    rows, draws = [], {}
    for grid, in_grid in pairs.groupby("grid", sort=True):

        def compute(grid=grid, in_grid=in_grid):
            return _grid_effects(grid, in_grid, n, seed, level, read)

        key = ("paired_effects", grid, candidate, reference, n, seed, level)
        grid_rows, grid_draws = compute() if results is None else results.cached(key, compute)
        rows += grid_rows
        draws.update(grid_draws)
    table = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    return (table, draws) if return_draws else table


class _GridPairs:
    """One grid's pairs, fold by fold, with each pair's scenario indicators, and the per-(fold, scenario) sums and
    counts of their observed differences."""

    def __init__(self, in_grid, read):
        names = ("scenario", "diff", "path_candidate", "path_reference")
        column = {name: in_grid[name].to_numpy() for name in ("fold", *names)}
        self.scenarios = sorted(set(column["scenario"]))
        self.folds = []
        for fold in np.unique(column["fold"]):
            mine = np.flatnonzero(column["fold"] == fold)
            self.folds.append(_Fold(*(column[name][mine] for name in names), read))
        # Which scenario each pair of a fold belongs to, as (pairs, scenarios) indicators.
        wanted = np.array(self.scenarios)[None, :]
        self.indicators = [(fold.scenarios[:, None] == wanted).astype(float) for fold in self.folds]
        self.sums = np.stack([fold.observed @ m for fold, m in zip(self.folds, self.indicators)])  # (folds, scenarios)
        self.counts = np.stack([m.sum(axis=0) for m in self.indicators])
        first_rows = {s: i for i, s in reversed(list(enumerate(column["scenario"])))}
        described = ["task", "backbone", "strategy", "learning_rate"]
        self.firsts = {s: {name: in_grid[name].iloc[i] for name in described} for s, i in first_rows.items()}

    def bootstrap(self, n: int, rng):
        """The replicates: ``n`` draws of F folds with replacement (each drawn fold rescored on one draw of its test
        patients). Returns (occurrences (n, folds, scenarios) sums, drawn (n, folds) fold indices, per_fold: each
        fold's own (n, scenarios) estimates)."""
        n_folds = len(self.folds)
        drawn = rng.integers(0, n_folds, (n, n_folds)) if n_folds > 1 else np.zeros((n, 1), dtype=np.int64)
        resampled = []  # per fold: (draws, scenarios) sums of resampled differences, one row per draw of its patients
        for f, (fold, m) in enumerate(zip(self.folds, self.indicators)):
            resampled.append(fold.resampled(max(n, int((drawn == f).sum())), rng) @ m)
        occurrences = np.empty((n, n_folds, len(self.scenarios)))
        for f in range(n_folds):
            slots = drawn == f
            occurrences[slots] = resampled[f][: int(slots.sum())]
        with np.errstate(invalid="ignore", divide="ignore"):
            per_fold = [r[:n] / c for r, c in zip(resampled, self.counts)]
        return occurrences, drawn, per_fold


def pair_effects(name, pairs, n: int = 1000, seed: int = 0, level: float = 0.95, read=read_predictions):
    """``paired_effects``' rows and replicates for any one set of pairs (``paired_runs``' columns: task, backbone,
    strategy, learning_rate, scenario, fold, diff, path_candidate, path_reference), with ``name`` in their grid
    column and in the bootstrap's seed: the same fold-level interval and minimum-units rule for pairs made otherwise
    (two image sizes of one source: ``grid.resolution``)."""
    return _grid_effects(name, pairs, n, seed, level, read)


def _grid_effects(grid, in_grid, n: int, seed: int, level: float, read):
    """``paired_effects``' rows and replicates of one grid."""
    data = _GridPairs(in_grid, read)
    folds, counts = data.folds, data.counts
    rng = np.random.default_rng(derive_seed(seed, "paired_effects", grid))
    occurrences, drawn, per_fold = data.bootstrap(n, rng)
    by_scenario, se_s, folds_s, overall, se, _ = _fold_statistics(data.sums, counts)
    boot_s, boot_se_s, _, boot, boot_se, _ = _fold_statistics(occurrences, counts[drawn])

    rows, draws = [], {}
    for j, scenario in enumerate(data.scenarios):
        observed = np.concatenate([fold.observed[fold.scenarios == scenario] for fold in folds])
        only = [f for f in range(len(folds)) if counts[f, j] > 0]
        replicate, interval = _interval(
            by_scenario[j],
            se_s[j],
            folds_s[j],
            boot_s[:, j],
            boot_se_s[:, j],
            per_fold[only[0]][:, j],
            level,
            resampled=bool(folds[only[0]].units_of(scenario)),
            smallest=folds[only[0]].smallest_units(scenario),
        )
        draws[(grid, scenario)] = replicate
        units = [u for fold in folds for u in fold.units_of(scenario)]
        rows.append(
            {
                "grid": grid,
                **data.firsts[scenario],
                "scenario": scenario,
                "n_pairs": len(observed),
                "n_with_predictions": len(units),
                "diff": float(by_scenario[j]),
                **interval,
                "wins": int((observed > 0).sum()),
                "losses": int((observed < 0).sum()),
                "ties": int((observed == 0).sum()),
                "unit": ", ".join(sorted(set(units))) or None,
            }
        )
    resampled = any(fold.tests for fold in folds)
    replicate, interval = _interval(
        overall,
        se,
        len(folds),
        boot,
        boot_se,
        per_fold[0].mean(axis=1),
        level,
        resampled=resampled,
        smallest=folds[0].smallest_units(),
    )
    draws[(grid, "overall")] = replicate
    rows.append(
        {
            "grid": grid,
            "task": in_grid["task"].iloc[0],
            "scenario": "overall",
            "backbone": None,
            "strategy": None,
            "learning_rate": np.nan,
            "n_pairs": int(sum(r["n_pairs"] for r in rows)),
            "n_with_predictions": int(sum(r["n_with_predictions"] for r in rows)),
            "diff": float(overall),
            **interval,
            "wins": int(sum(r["wins"] for r in rows)),
            "losses": int(sum(r["losses"] for r in rows)),
            "ties": int(sum(r["ties"] for r in rows)),
            "unit": ", ".join(sorted({u for fold in folds for u in fold.units_of()})) or None,
        }
    )
    return rows, draws


# -- the mixed model and the practitioner's estimate -----------------------------------------------------


def mixed_model_frame(records, candidate: str = "radimagenet", reference: str = "imagenet"):
    """The paired differences the mixed model fits, one grid's or several: one row per pair (``paired_runs``) with
    diff, scenario, backbone, strategy, learning_rate, fold, repeat, and ``group``, the fold (with the grid's name
    in front when there are several grids, as for ``term``, the scenario the fixed effects are of)."""
    pairs = paired_runs(records, candidate, reference)
    prefix = pairs["grid"].astype(str) + "/" if pairs["grid"].nunique() > 1 else ""
    pairs["group"] = prefix + pairs["fold"].astype(str)
    pairs["term"] = prefix + pairs["scenario"].astype(str)
    columns = ["grid", "diff", "scenario", "backbone", "strategy", "learning_rate", "fold", "repeat", "group", "term"]
    return pairs[columns].reset_index(drop=True)


MIXED_FORMULA = "diff ~ C(term, Sum)"


def mixed_model(records, candidate: str = "radimagenet", reference: str = "imagenet", level: float = 0.95) -> dict:
    """A linear mixed model of the paired differences (statsmodels MixedLM, the ``stats`` extra): each pair's
    AUC(candidate) − AUC(reference) ~ scenario (fixed effects, sum-to-zero) + a random intercept per fold.

    The pairs of a fold share its test patients and training set, so they move together: the fold's random
    intercept carries that, and the repeats and scenarios of a fold are its within-fold replicates. The source
    effect is the intercept, the mean over scenarios of the paired difference (the estimand of ``paired_effects``'
    overall row). A model of the runs' AUCs with a random intercept per fold:repeat (this function before) cancels
    that intercept in the within-group contrast and treats the pairs of a fold as independent: its intervals
    covered 0.47–0.75 in simulations. The interval and P value use t quantiles with F − 1 degrees of freedom (F
    folds: the between-fold information the SE rests on), not the normal ones, which under-cover with 5 folds.
    Fitted by REML (statsmodels' default). With a single split (one fold) the fold's shared error cannot be
    separated from the effect: no interval (NaN; ``paired_effects``' interval over the test patients is then the
    one to read). The minimum-units rule (``stats.too_few``) holds for it as for every interval: with fewer than 3
    folds, no fit, no interval and no P value (NaN, null in a file), and ``no_interval`` says why; so with a zero SE.

    Returns:
        {"effect" (AUC points), "se", "low", "high" (t interval at ``level``), "p" (two-sided, effect = 0), "df",
        "n_pairs", "n_runs" (2 per pair), "n_groups" (folds), "formula", "converged", "no_interval" (None, or why
        there is no interval and no P value)}.
    """
    smf = require("statsmodels.formula.api", "stats", "The mixed-effects model of the grid", package="statsmodels")
    from scipy import stats

    frame = mixed_model_frame(records, candidate, reference)
    formula = MIXED_FORMULA if frame["term"].nunique() > 1 else "diff ~ 1"
    empty = {"effect": math.nan, "se": math.nan, "low": math.nan, "high": math.nan, "p": math.nan, "df": math.nan}
    base = {
        "n_pairs": len(frame),
        "n_runs": 2 * len(frame),
        "n_groups": int(frame["group"].nunique()),
        "formula": formula,
    }
    reason = too_few(base["n_groups"], "fold")
    if reason:
        return {**empty, **base, "converged": False, "no_interval": reason}
    fit = _fit_mixed(smf.mixedlm(formula, frame, groups=frame["group"]))
    if fit is None or not np.isfinite(fit.bse["Intercept"]):
        return {**empty, **base, "converged": False, "no_interval": "no interval (the mixed model did not fit)"}
    effect, se = float(fit.params["Intercept"]), float(fit.bse["Intercept"])
    if not se > 0:
        return {
            **empty,
            "effect": effect,
            **base,
            "converged": bool(fit.converged),
            "no_interval": no_spread(base["n_groups"], "fold"),
        }
    df = base["n_groups"] - 1
    half = float(stats.t.ppf(1 - (1 - level) / 2, df)) * se
    p = float(2 * stats.t.sf(abs(effect) / se, df)) if se > 0 else math.nan
    return {
        "effect": effect,
        "se": se,
        "low": effect - half,
        "high": effect + half,
        "p": p,
        "df": float(df),
        **base,
        "converged": bool(fit.converged),
        "no_interval": None,
    }


MIXED_METHODS = (None, "powell", "nm")  # statsmodels' default (BFGS, L-BFGS, CG in turn), then derivative-free ones


def _fit_mixed(model):
    """The REML fit by the first optimizer that converges (the last fit that ran when none does; None when every
    optimizer fails: statsmodels' gradient methods can meet a singular matrix when a variance runs to its
    boundary)."""
    import warnings

    fit = None
    for method in MIXED_METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "MLE on the boundary" and convergence notes: `converged` says it
            try:
                candidate = model.fit(method=method)
            except (np.linalg.LinAlgError, ValueError):
                continue
        fit = candidate
        if candidate.converged:
            break
    return fit


def best_val_losses(records):
    """The records with ``best_val_loss`` read from each run's record.json (NaN where not recorded); of a
    ``GridResults``, from the records it holds (``GridResults.with_val_losses``)."""
    if isinstance(records, GridResults):
        return records.with_val_losses()
    records = records.copy()
    if "best_val_loss" not in records.columns:
        losses = []
        for path in records["path"]:
            file = Path(path) / RECORD_FILE
            loss = RunRecord.read(file).best_val_loss if file.exists() else None
            losses.append(math.nan if loss is None else float(loss))
        records["best_val_loss"] = losses
    return records


def practitioner_selections(records):
    """The practitioner's choices: in each (grid, source, fold, repeat), the scenario with the lowest best validation
    loss (the checkpointing criterion: no test data used), with its test AUC.

    Returns:
        A DataFrame with one row per (grid, source, fold, repeat): grid, source, fold, repeat, scenario, auc.
    """
    import pandas as pd

    records = _with_repeat(best_val_losses(records))
    valid = records[
        records["status"].isin(("finished", "diverged"))
        & np.isfinite(records["auc"].astype(float))
        & np.isfinite(records["best_val_loss"].astype(float))
    ]
    columns = ["grid", "source", "fold", "repeat", "scenario", "auc"]
    if valid.empty:
        return pd.DataFrame(columns=columns)
    best = valid.loc[valid.groupby(["grid", "source", "fold", "repeat"])["best_val_loss"].idxmin()]
    best = best.assign(auc=best["auc"].astype(float))
    return best[columns].sort_values(["grid", "source", "fold", "repeat"], kind="stable").reset_index(drop=True)


def practitioner(records):
    """The practitioner's estimate: in each (grid, source, fold, repeat), the scenario with the lowest best
    validation loss (the checkpointing criterion: no test data used) is chosen and scored by its test AUC; the
    estimate is the mean over folds and repeats (``practitioner_selections``).

    Returns:
        A DataFrame with one row per (grid, source): n_selections, auc (mean test AUC of the chosen runs), sd,
        and chosen (the scenarios chosen, most often first).
    """
    import pandas as pd

    rows = []
    for (grid, source), best in practitioner_selections(records).groupby(["grid", "source"], sort=True):
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
