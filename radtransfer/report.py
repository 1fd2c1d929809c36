"""Paper-style tables from a grid folder: means ± SD over scenarios, paired tests, the paper beside ours.

The report reads the grid's typed records (records.py): what the grid asked for (GridSpec) judges
completeness, each RunRecord says whether its run finished, diverged or failed, and PairRecords hold the
per-run comparisons of the two weight sources on the same test images.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .grid import effects as grid_effects
from .grid import equivalence as grid_equivalence
from .grid import resolution as grid_resolution
from .grid.arms import comparisons as arm_comparisons
from .grid.pairs import pair_table
from .grid.paper import PAPER_IMPROVEMENTS, paper_task, radimagenet_scenarios
from .grid.records import GridResults, load_records  # noqa: F401  (report.load_records, report.GridResults)
from .grid.sanity import frozen_sanity
from .utils.choices import check_choice

VALID_STATUSES = ("finished", "diverged")


def _valid(records):
    """Runs that count towards the means: finished or diverged, with a finite AUC."""
    return records[records["status"].isin(VALID_STATUSES) & np.isfinite(records["auc"].astype(float))]


def scenario_means(records):
    """Folds averaged first: one row per (grid, source, scenario) with the mean AUC and ``n_folds``, the
    number of folds with a valid AUC (folds lacking a class, or runs without a checkpoint, do not count)."""
    keys = ["grid", "task", "source", "backbone", "strategy", "learning_rate", "scenario"]
    valid = _valid(records)
    grouped = valid.groupby(keys, dropna=False)
    table = grouped["auc"].mean().rename("auc").to_frame()
    table["n_folds"] = grouped["fold"].nunique()
    return table.reset_index()


def _mean_sd(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return np.nan, np.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else np.nan


def paired_tests(a, b) -> dict:
    """Wilcoxon signed-rank and paired t test of a − b over matched pairs (scipy)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    result = {"n_pairs": int(len(a)), "wilcoxon_p": np.nan, "ttest_p": np.nan}
    if len(a) >= 2 and np.any(a != b):
        result["wilcoxon_p"] = float(stats.wilcoxon(a, b).pvalue)
        result["ttest_p"] = float(stats.ttest_rel(a, b).pvalue)
    return result


def matched_pairs(records, candidate: str = "radimagenet", reference: str = "imagenet"):
    """The two sources' runs matched by grid, scenario, fold and repeat, and the pairs that could not be matched.

    A pair counts when both of its runs have a valid AUC (finished, or diverged with a checkpoint); a pair one of
    whose runs failed, lacks an AUC or is missing is dropped, and so is its partner, so every difference the
    report gives is over the same folds, repeats and patients for both sources.

    Returns:
        (pairs, dropped): ``grid.effects.paired_runs``'s table (auc_candidate, auc_reference, diff per pair), and a
        table of the dropped pairs (grid, scenario, fold, repeat) that either source recorded, in the grids that
        ran both sources.
    """
    import pandas as pd

    pairs = grid_effects.paired_runs(records, candidate, reference)
    keys = ["grid", "scenario", "fold", "repeat"]
    both = records[records["source"].isin((candidate, reference))]
    if "repeat" not in both.columns:
        both = both.assign(repeat=0)
    compared = both.groupby("grid")["source"].transform("nunique") == 2  # grids that ran both sources
    both = both[compared]
    recorded = both[keys].assign(repeat=both["repeat"].fillna(0).astype(int)).drop_duplicates()
    merged = recorded.merge(pairs[keys], on=keys, how="left", indicator=True)
    dropped = merged[merged["_merge"] == "left_only"][keys].reset_index(drop=True)
    return pairs, pd.DataFrame(dropped, columns=keys)


def _matched_means(pairs):
    """Per scenario, both sources' mean AUC over its matched pairs (folds and repeats averaged first)."""
    means = pairs.groupby("scenario")[["auc_candidate", "auc_reference"]].mean()
    return means["auc_candidate"].astype(float), means["auc_reference"].astype(float)


def _matched_difference(pairs, dropped) -> dict:
    """The mean over scenarios of the matched difference, its Wilcoxon and t tests over the scenarios, and the number
    of pairs dropped."""
    a, b = _matched_means(pairs)
    row = {"diff": float((a - b).mean()) if len(a) else np.nan, **paired_tests(a, b), "n_pairs_dropped": len(dropped)}
    return row


def paired_comparisons(out_dir, candidate: str = "radimagenet", reference: str = "imagenet"):
    """Per (task, scenario, fold, repeat): the two sources' AUCs on the same test images, compared by DeLong's
    test (or a paired patient-level bootstrap when patients have several images, or for more than two
    classes). Read from the grid's ``pairs/`` records; pairs a grid did not write (older grids) are
    computed from the runs' saved predictions (``grid.pairs.pair_table``).

    Args:
        out_dir: a grid folder, a folder of grids, or their ``GridResults``.
        candidate, reference: the weight sources compared.

    Returns:
        A DataFrame with grid, task, scenario, fold, repeat, method, unit, auc_<candidate>, auc_<reference>, diff,
        p.
    """
    results = GridResults.of(out_dir)
    return results.cached(("pairs", candidate, reference), lambda: pair_table(results, candidate, reference)).copy()


def _expected(spec) -> tuple[list, int]:
    """The scenario ids and number of folds a grid asked for (the paper's 24 for grids written before
    grid.json recorded its scenarios)."""
    if spec is not None and spec.scenarios:
        return spec.scenario_ids(), spec.n_folds
    return [s.id for s in radimagenet_scenarios()], (spec.n_folds if spec is not None else 1)


def effects(out_dir, candidate: str = "radimagenet", reference: str = "imagenet", n: int = 1000, seed: int = 0):
    """Per grid and scenario, and overall: the mean paired AUC difference (candidate − reference) over the runs of
    the same scenario, fold and repeat, with its interval over folds (the t interval on the folds, F − 1 degrees of
    freedom; with one fold, a bootstrap of the test patients, ``covers`` saying so) and the win count; see
    ``grid.effects.paired_effects``. ``out_dir``: a grid folder, a folder of grids, or their ``GridResults`` (each
    grid's effect is then computed once, whichever table asks for it)."""
    return grid_effects.paired_effects(GridResults.of(out_dir), candidate, reference, n=n, seed=seed)


def resolution_effects(out_dir, n: int = 1000, seed: int = 0):
    """Per grid, weight source and pair of image sizes: the mean paired AUC difference (larger − smaller size) per
    scenario and overall, with the t interval over 3 or more folds (none with 2: ``stats.too_few``), for grids run
    at several sizes (``GridOptions.image_sizes``); ``grid.resolution.resolution_effects``."""
    return grid_resolution.resolution_effects(GridResults.of(out_dir), n=n, seed=seed)


def _has_statsmodels() -> bool:
    import importlib.util

    return importlib.util.find_spec("statsmodels") is not None


# The summary's columns (diff_vs_{reference} named by the reference), then TOST's with a margin.
SUMMARY_COLUMNS = [
    "grid",
    "task",
    "source",
    "n_runs",
    "n_expected",
    "n_scenarios",
    "min_folds",
    "n_diverged",
    "n_failed",
    "n_missing_class",
    "complete",
    "mean_auc",
    "sd_auc",
    "diff_vs_{reference}",
    "n_pairs",
    "n_pairs_dropped",
    "wilcoxon_p",
    "ttest_p",
    "run_pairs",
    "run_pairs_better",
    "run_pairs_worse",
    "run_pairs_untested",
    "paper_gain",
    "practitioner_auc",
    "practitioner_diff",
    "paired_diff",
    "paired_low",
    "paired_high",
    "paired_wins",
    "paired_losses",
    "paired_covers",
    "paired_no_interval",
    "mixed_effect",
    "mixed_se",
    "mixed_low",
    "mixed_high",
    "mixed_p",
    "mixed_no_interval",
    "preprocessing",
    "frozen_auc",
    "frozen_collapse",
]
TOST_COLUMNS = ["tost_margin", "tost_low", "tost_high", "tost_p", "tost_verdict", "tost_t_p", "tost_t_verdict"]


def summarize(
    out_dir,
    reference: str = "imagenet",
    candidate: str = "radimagenet",
    equivalence_margin: float | None = None,
    mixed: bool | None = None,
    n_boot: int = 1000,
    seed: int = 0,
):
    """Per task and weight source: mean AUC ± SD over the scenarios (folds averaged first), completeness
    against the grid's own scenarios and folds, diverged and failed runs, runs whose test fold lacks a
    class, and — on the candidate's rows — the difference from the reference source with paired Wilcoxon
    and t tests over the scenarios, the per-run paired tests on the same test images (how many
    favour either source at P < .05), and the paper's reported gain when the grid's task is one of the
    paper's.

    ``mean_auc`` and ``sd_auc`` describe each source over its own valid runs. Every difference (``diff_vs_*``
    and its tests, ``practitioner_diff``, ``paired_*``, ``mixed_*``, ``tost_*``) is over matched runs only: the
    same scenario, fold and repeat valid in both sources (``matched_pairs``); ``n_pairs_dropped`` counts the
    (scenario, fold, repeat) pairs left out because one of their runs failed, has no AUC or is missing, and a
    failed run's partner is left out with it.

    One row per grid (a grid folder, named by its path under ``out_dir``) and weight source: two grids are
    never pooled, whatever their task names.

    Beside the paper's mean ± SD over scenarios, each source's row gives the practitioner's estimate
    (``practitioner_auc``: in each fold and repeat, the scenario with the lowest validation loss, scored on test;
    ``grid.effects.practitioner``), and the candidate's row the paired effect of the grid (``grid.effects``):
    ``paired_diff`` with its interval ``paired_low``–``paired_high`` whose unit is the fold (the t interval on the
    folds; with a single split, a bootstrap of the test patients only: ``paired_covers`` says what the interval
    holds) and the paired runs it won and lost; the mixed model's source effect (``mixed_*``: the paired differences
    ~ scenario + a random intercept per fold, t interval with F − 1 degrees of freedom); and, with
    ``equivalence_margin``, TOST of the overall paired difference (``grid.equivalence.equivalence``): ``tost_*`` from
    the bootstrap-t replicates (the 95% interval must lie within ±margin: each one-sided test at 2.5%, see
    ``grid.equivalence.equivalence``; the verdict printed), and
    ``tost_t_p``/``tost_t_verdict`` from t tests on the folds (not available with one fold). Each grid's
    replicates are seeded from (``seed``, the grid's name): its numbers do not depend on the other grids beside it.

    Args:
        out_dir: a grid folder, a folder of grids, or their ``GridResults`` (read once; each paired effect computed
            once, whichever table asks for it).
        reference, candidate: the weight sources compared.
        equivalence_margin: the TOST margin m in AUC points (e.g. 0.01); None: no TOST columns.
        mixed: fit the mixed model (needs statsmodels, the ``stats`` extra); None: when statsmodels is installed.
        n_boot: bootstrap replicates of the paired effect.
        seed: the bootstrap's seed.

    Returns:
        A pandas DataFrame with columns grid, task, source, n_runs, n_expected, n_scenarios, min_folds,
        n_diverged, n_failed, n_missing_class, complete, mean_auc, sd_auc, and (candidate rows)
        diff_vs_<reference>, n_pairs (the scenarios the tests pair), n_pairs_dropped, wilcoxon_p, ttest_p,
        run_pairs, run_pairs_better, run_pairs_worse (pairs with P < .05 either way), run_pairs_untested (pairs
        without a test under the minimum-units rule, ``stats.too_few``: counted in neither),
        paper_gain, then practitioner_auc (all rows), practitioner_diff, paired_diff, paired_low, paired_high,
        paired_wins, paired_losses, paired_covers, paired_no_interval (why paired_low/high are empty, or None),
        mixed_effect, mixed_se, mixed_low, mixed_high, mixed_p, mixed_no_interval (the same for the mixed model),
        preprocessing, frozen_auc, frozen_collapse, and with a margin
        tost_margin, tost_low, tost_high, tost_p, tost_verdict, tost_t_p, tost_t_verdict.
    """
    import pandas as pd

    results = GridResults.of(out_dir)
    records = results.records
    columns = [c.format(reference=reference) for c in SUMMARY_COLUMNS]
    columns += TOST_COLUMNS if equivalence_margin is not None else []
    if records.empty:
        return pd.DataFrame(columns=columns)
    means = scenario_means(records)
    practitioner = grid_effects.practitioner(results).set_index(["grid", "source"])["auc"]
    fit_mixed = _has_statsmodels() if mixed is None else mixed
    compared = _Compared(results, candidate, reference, equivalence_margin, fit_mixed, n_boot, seed)
    sanity = frozen_sanity(records).set_index(["grid", "source"])
    for message in sanity["message"]:
        if message:
            warnings.warn(message, stacklevel=2)
    rows = []
    for (grid, source), runs in records.groupby(["grid", "source"], dropna=False):
        spec = results.specs.get(grid)
        group = means[(means["grid"] == grid) & (means["source"] == source)]
        row = {**_source_columns(runs, spec, group), "grid": grid, "source": source}
        row["frozen_auc"] = sanity["frozen_auc"].get((grid, source), np.nan)
        row["frozen_collapse"] = bool(sanity["collapsed"].get((grid, source), False))
        if source == candidate:
            row.update(compared.columns(grid, spec, row["task"]))
        row["practitioner_auc"] = practitioner.get((grid, source), np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def _source_columns(runs, spec, group) -> dict:
    """A source's row of the summary in one grid: its runs' counts, completeness against the grid's scenarios and
    folds, and its mean ± SD over its scenario means (``group``, the grid's and source's rows of
    ``scenario_means``)."""
    scenario_ids, n_folds = _expected(spec)
    whole = group[group["n_folds"] >= n_folds]
    mean, sd = _mean_sd(group["auc"])
    return {
        "task": runs["task"].iloc[0],
        "n_runs": len(runs),
        "n_expected": len(scenario_ids) * n_folds * max(1, getattr(spec, "repeats", 1) or 1),
        "n_scenarios": len(group),
        "min_folds": int(group["n_folds"].min()) if len(group) else 0,
        "n_diverged": int((runs["status"] == "diverged").sum()),
        "n_failed": int((runs["status"] == "failed").sum()),
        "n_missing_class": int((runs["missing_classes"].fillna("") != "").sum()),
        "complete": set(scenario_ids) <= set(whole["scenario"]),
        "mean_auc": mean,
        "sd_auc": sd,
        "preprocessing": runs["preprocessing"].iloc[0],
    }


class _Compared:
    """The candidate's comparisons with the reference over a GridResults, computed once for all its grids (the run
    pairs' tests, the practitioner's choices, the matched pairs, the paired effects), and one grid's columns of the
    candidate's summary row from them (``columns``)."""

    def __init__(self, results, candidate, reference, margin, fit_mixed, n_boot, seed):
        self.results, self.candidate, self.reference = results, candidate, reference
        self.margin, self.fit_mixed = margin, fit_mixed
        self.pairs = paired_comparisons(results, candidate, reference)
        self.selections = grid_effects.practitioner_selections(results)
        self.matched, self.dropped = matched_pairs(results.records, candidate, reference)
        self.effects, self.draws = grid_effects.paired_effects(
            results, candidate, reference, n=n_boot, seed=seed, return_draws=True
        )

    def columns(self, grid, spec, task) -> dict:
        """The candidate row's difference from the reference in ``grid``: over the matched runs, the run pairs'
        tests, the paper's gain, the practitioner's difference, the paired effect (with TOST) and the mixed model."""
        matched = self.matched[self.matched["grid"] == grid]
        row = _matched_difference(matched, self.dropped[self.dropped["grid"] == grid])
        row[f"diff_vs_{self.reference}"] = row.pop("diff")
        mine = self.pairs[self.pairs["grid"] == grid]
        row["run_pairs"] = len(mine)
        row["run_pairs_better"] = int(((mine["p"] < 0.05) & (mine["diff"] > 0)).sum())
        row["run_pairs_worse"] = int(((mine["p"] < 0.05) & (mine["diff"] < 0)).sum())
        # Pairs under the minimum-units rule have no P (NaN): neither a win nor a loss, counted here.
        row["run_pairs_untested"] = int(mine["no_interval"].notna().sum()) if "no_interval" in mine else 0
        paper = spec.paper_task if spec is not None and spec.schema_version >= 2 else paper_task(task)
        row["paper_gain"] = PAPER_IMPROVEMENTS[paper] / 100 if paper in PAPER_IMPROVEMENTS else np.nan
        selections = self.selections[self.selections["grid"] == grid]
        row["practitioner_diff"] = _practitioner_diff(selections, self.candidate, self.reference)
        row.update(_paired_columns(self.effects, self.draws, grid, self.margin))
        if self.fit_mixed:
            fit = grid_effects.mixed_model(self.results.grid(grid).records, self.candidate, self.reference)
            row.update({f"mixed_{k}": fit[k] for k in ("effect", "se", "low", "high", "p", "no_interval")})
        return row


def _practitioner_diff(selections, candidate, reference) -> float:
    """The practitioner's difference over the folds and repeats where both sources made a choice."""
    a = selections[selections["source"] == candidate]
    b = selections[selections["source"] == reference]
    both = a.merge(b, on=["fold", "repeat"], suffixes=("_candidate", "_reference"))
    return float((both["auc_candidate"] - both["auc_reference"]).mean()) if len(both) else np.nan


def _paired_columns(paired, draws, grid, margin) -> dict:
    """The candidate row's paired effect and (with a margin) TOST columns of one grid."""
    overall = paired[(paired["grid"] == grid) & (paired["scenario"] == "overall")]
    if overall.empty:
        return {}
    overall = overall.iloc[0]
    row = {
        "paired_diff": overall["diff"],
        "paired_low": overall["low"],
        "paired_high": overall["high"],
        "paired_wins": overall["wins"],
        "paired_losses": overall["losses"],
        "paired_covers": overall["covers"],
        "paired_no_interval": overall.get("no_interval"),
    }
    if margin is not None:
        both = grid_equivalence.equivalence(overall, draws[(grid, "overall")], margin)
        boot, by_t = both["bootstrap"], both["t"]
        row.update(
            {
                "tost_margin": float(margin),
                "tost_low": boot["low"],
                "tost_high": boot["high"],
                "tost_p": boot["p"],
                "tost_verdict": boot["verdict"],
                "tost_t_p": by_t["p"],
                "tost_t_verdict": by_t["verdict"],
            }
        )
    return row


COMPARISON_COLUMNS = [
    "grid",
    "task",
    "factor",
    "candidate",
    "reference",
    "auc_candidate",
    "auc_reference",
    "diff",
    "n_pairs",
    "n_pairs_dropped",
    "wilcoxon_p",
    "ttest_p",
    "paired_diff",
    "paired_low",
    "paired_high",
    "paired_wins",
    "paired_losses",
    "paired_covers",
    "paired_no_interval",
]


def comparisons(out_dir, equivalence_margin: float | None = None, n_boot: int = 1000, seed: int = 0):
    """Every paired comparison a grid's arms answer (``grid.arms.comparisons``), one row each: two weight sources
    fed the same preprocessing (factor "source"; in a grid with faithful and corrected arms, RadImageNet −
    ImageNet once as the reference's code fed them and once corrected), and one source's corrected − faithful
    arm (factor "preprocessing": what fixing the input changes).

    Each row has the two arms' mean AUC over scenarios and their difference, over the matched runs only (the same
    scenario, fold and repeat valid in both arms; ``n_pairs_dropped`` counts the pairs left out because one of
    their runs failed or has no AUC), with the paired Wilcoxon and t tests over the scenarios (as ``summarize``),
    and the paired effect over runs of the same scenario, fold and repeat with its interval over folds and
    wins/losses (as ``summarize``'s ``paired_*``; the arms of one repeat share the run seed); with
    ``equivalence_margin``, the TOST columns too.

    Args:
        out_dir: a grid folder, a folder of grids, or their ``GridResults``.
        equivalence_margin: the TOST margin in AUC points; None: no TOST columns.
        n_boot: bootstrap replicates of each paired effect.
        seed: the bootstrap's seed.

    Returns:
        A pandas DataFrame (``COMPARISON_COLUMNS``, then the TOST columns with a margin).
    """
    import pandas as pd

    results = GridResults.of(out_dir)
    records = results.records
    columns = COMPARISON_COLUMNS + (TOST_COLUMNS if equivalence_margin is not None else [])
    if records.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for grid, runs in records.groupby("grid"):
        spec = results.specs.get(grid)
        sources = list(spec.sources) if spec is not None else list(dict.fromkeys(runs["source"]))
        faithful = bool(spec.faithful) if spec is not None else bool(runs["faithful"].iloc[0])
        for candidate, reference, factor in arm_comparisons(sources, faithful):
            pairs, dropped = matched_pairs(runs, candidate, reference)
            a, b = _matched_means(pairs)
            row = {
                "grid": grid,
                "task": runs["task"].iloc[0],
                "factor": factor,
                "candidate": candidate,
                "reference": reference,
                "auc_candidate": _mean_sd(a)[0],
                "auc_reference": _mean_sd(b)[0],
                **_matched_difference(pairs, dropped),
            }
            table, draws = grid_effects.paired_effects(
                results.grid(grid), candidate, reference, n=n_boot, seed=seed, return_draws=True
            )
            row.update(_paired_columns(table, draws, grid, equivalence_margin))
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def breakdown(out_dir, by: str, candidate: str = "radimagenet", reference: str = "imagenet"):
    """Mean AUC ± SD and scenario counts per grid, source and ``by`` ("backbone" or "strategy"), and on the
    candidate's rows its difference from the reference over the matched runs of that backbone or strategy.

    ``mean_auc`` and ``sd_auc`` describe each source over its own valid runs (folds averaged first, as the
    summary's); ``diff_vs_<reference>`` is over the (scenario, fold, repeat) pairs valid in both sources only
    (``n_pairs``: the scenarios; ``n_pairs_dropped``: the run pairs left out because one run failed or has no AUC).

    Args:
        out_dir: a grid folder, a folder of grids, or their ``GridResults``.
        by: "backbone" or "strategy".
        candidate, reference: the weight sources whose difference is given.
    """
    import pandas as pd

    records = GridResults.of(out_dir).records
    means = scenario_means(records)
    columns = ["grid", "task", "source", by, "n_scenarios", "mean_auc", "sd_auc"]
    columns += [f"diff_vs_{reference}", "n_pairs", "n_pairs_dropped"]
    if means.empty:
        return pd.DataFrame(columns=columns)
    pairs, dropped = matched_pairs(records, candidate, reference)
    level_of = records.drop_duplicates(["grid", "scenario"]).set_index(["grid", "scenario"])[by]
    dropped_level = [level_of.get((g, sc)) for g, sc in zip(dropped["grid"], dropped["scenario"])]
    rows = []
    for (grid, task, source, key), group in means.groupby(["grid", "task", "source", by], dropna=False):
        mean, sd = _mean_sd(group["auc"])
        row = {
            "grid": grid,
            "task": task,
            "source": source,
            by: key,
            "n_scenarios": len(group),
            "mean_auc": mean,
            "sd_auc": sd,
        }
        if source == candidate:
            mine = pairs[(pairs["grid"] == grid) & (pairs[by] == key)]
            lost = dropped[(dropped["grid"] == grid).to_numpy() & np.array([d == key for d in dropped_level], bool)]
            matched = _matched_difference(mine, lost)
            row.update(
                {
                    f"diff_vs_{reference}": matched["diff"],
                    "n_pairs": matched["n_pairs"],
                    "n_pairs_dropped": matched["n_pairs_dropped"],
                }
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


COUNT_COLUMNS = (
    "fold",
    "repeat",
    "runs",
    "min_folds",
    "run_pairs",
    "run_pairs_better",
    "run_pairs_worse",
    "run_pairs_untested",
    "best_epoch",
    "diverged_epoch",
    "epochs_run",
)


def _is_count(column: str) -> bool:
    """Columns of whole numbers (counts, folds, epochs): printed as integers even where a missing value made pandas
    store them as floats."""
    return column.startswith("n_") or column in COUNT_COLUMNS


def learning_rate_text(value) -> str:
    """A learning rate in its shortest form: 0.001, 0.0001, 3e-05 (never 0.000)."""
    if value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return "–"
    return f"{float(value):.4g}"


def _cell(value, column: str) -> str:
    if column in ("learning_rate", "lr") and isinstance(value, (int, float, np.integer, np.floating)):
        return learning_rate_text(value)
    whole = isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer()
    if whole and _is_count(column):
        return str(int(value))
    return _fmt(value)


def to_markdown(frame) -> str:
    """A plain markdown table (no optional dependencies)."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = frame.itertuples(index=False)
    lines = ["| " + " | ".join(_cell(v, c) for v, c in zip(row, frame.columns)) + " |" for row in rows]
    return "\n".join([header, rule, *lines])


def terminal_summary(computed: dict, written: dict, figures=(), width: int = 80) -> str:
    """What ``radtransfer report`` prints: per grid and source, its runs, mean AUC ± SD over scenarios and the paired
    difference from the reference with its interval, in lines of at most ``width`` characters; then the folder the
    wide tables (the summary's 40-odd columns) and the figures were written to, and their file names.

    Args:
        computed: ``tables``'s tables (its "summary" is read).
        written: ``write``'s {name: path}.
        figures: the figure files written.
        width: the terminal's columns.
    """
    import os
    import textwrap

    summary = computed["summary"]
    reference = next((c[len("diff_vs_") :] for c in summary.columns if c.startswith("diff_vs_")), "reference")
    lines = []
    for grid, rows in summary.groupby("grid", sort=False):
        task = rows["task"].iloc[0]
        lines.append(f"{task}:" if grid in (".", task) else f"{task} (grid {grid}):")
        named = max(14, *(len(str(source)) for source in rows["source"]))  # arms are told apart by their suffix
        lines.append(f"  {'source':<{named}} {'runs':>7}  {'mean AUC ± SD':<15}  paired diff vs {reference}")
        for row in rows.itertuples(index=False):
            runs = f"{_cell(row.n_runs, 'n_runs')}/{_cell(row.n_expected, 'n_expected')}"
            auc = f"{_fmt(row.mean_auc)} ± {_fmt(row.sd_auc)}"
            diff = ""
            if np.isfinite(float(getattr(row, "paired_diff", np.nan))):
                low, high = float(row.paired_low), float(row.paired_high)
                none = getattr(row, "paired_no_interval", None)
                if isinstance(none, str) and none:
                    interval = none
                elif np.isfinite(low) and np.isfinite(high):
                    interval = f"95% interval {low:.3f} to {high:.3f}"
                else:
                    interval = "no interval"
                diff = f"{row.paired_diff:+.3f} ({interval})"
            line = f"  {str(row.source):<{named}} {runs:>7}  {auc:<15}"
            if diff and len(line) + 2 + len(diff) > width:  # never cut: the difference goes on a line of its own
                lines += [
                    line,
                    *textwrap.wrap(
                        f"paired diff vs {reference}: {diff}", width, initial_indent=" " * 4, subsequent_indent=" " * 6
                    ),
                ]
            else:
                lines.append(f"{line}  {diff}".rstrip())
    paths = [*written.values(), *figures]
    if paths:
        folder = os.path.commonpath([str(Path(p).parent) for p in paths])
        columns = len(summary.columns)
        lines += [f"\nThe full tables (summary: {columns} columns) and the figures, in", f"{folder}:"]
        names = ", ".join(str(Path(p).relative_to(folder)) for p in paths)
        lines += textwrap.wrap(names, width=width, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines)


def tables(out_dir, equivalence_margin=None) -> dict:
    """The report's tables by name (see ``write``), computed once: the grid folder read once (``GridResults``; pass
    one to share it with ``plots.grid_figures``), and each paired effect computed once."""
    results = GridResults.of(out_dir)
    return {
        "summary": summarize(results, equivalence_margin=equivalence_margin),
        "by_backbone": breakdown(results, "backbone"),
        "by_strategy": breakdown(results, "strategy"),
        "pairs": paired_comparisons(results),
        "effects": effects(results),
        "comparisons": comparisons(results, equivalence_margin=equivalence_margin),
        "runs": results.records.drop(columns=["path"]),
        **({"resolution": resolution} if len(resolution := resolution_effects(results)) else {}),
    }


def write(out_dir, formats=("md", "csv", "tex"), report_dir=None, equivalence_margin=None, computed=None) -> dict:
    """Writes the report's tables (``<name>.<fmt>`` for each format): summary (``summarize``), by_backbone and
    by_strategy (``breakdown``), pairs (``paired_comparisons``, run by run), effects (``effects``: the paired
    effect per scenario and overall), comparisons (``comparisons``: every pair of arms, such as faithful against
    corrected preprocessing), runs (every record) and, for a grid run at several image sizes, resolution
    (``resolution_effects``). Returns the paths written.

    Args:
        out_dir: the grid folder (or a folder of grids), or its ``GridResults``.
        formats: any of "md", "csv", "tex".
        report_dir: where to write (default ``out_dir/report``).
        equivalence_margin: as ``summarize``'s (the summary then carries the TOST result).
        computed: the tables, when ``tables(out_dir, equivalence_margin)`` already made them.
    """
    folder = out_dir.folder if isinstance(out_dir, GridResults) else Path(out_dir)
    report_dir = Path(report_dir or folder / "report")
    report_dir.mkdir(parents=True, exist_ok=True)
    computed = computed if computed is not None else tables(out_dir, equivalence_margin)
    written = {}
    for name, frame in computed.items():
        for fmt in formats:
            path = report_dir / f"{name}.{fmt}"
            if fmt == "csv":
                frame.to_csv(path, index=False)
            elif fmt == "md":
                path.write_text(to_markdown(frame) + "\n")
            elif fmt == "tex":
                path.write_text(_to_latex(frame))
            else:
                check_choice("formats", fmt, ("md", "csv", "tex"))
            written[f"{name}.{fmt}"] = str(path)
    return written


def _to_latex(frame) -> str:
    """A LaTeX tabular of the table with every cell and header escaped by pandas' Styler (``&``, ``#``,
    ``%``, ``_``, ``$``, braces, ...)."""
    shown = frame.copy()
    for column in shown.columns:
        shown[column] = [_cell(v, column) for v in shown[column]]
    styler = shown.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    return styler.to_latex(hrules=True)
