"""The resolution effect: how a grid's test AUC changes between two image sizes, within each weight source.

A grid run at several sizes (``GridOptions.image_sizes``, ``paper.with_image_sizes``) trains every scenario of a
source at each size on the same split with the same seed (``plan.run_seed`` leaves the size out), so the runs of one
source, scenario, fold and repeat at two sizes differ in their size only: their AUC difference is paired, as two
sources' runs are. The effect and its interval are ``grid.effects``' (``pair_effects``): the mean paired difference
per scenario and over the scenarios: the t interval over 3 or more folds, none with 2 (``stats.too_few``), and on a
single split the percentile interval over the test patients (none below 3 of them).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from .effects import EFFECT_COLUMNS, pair_effects
from .paper import Scenario
from .records import GridResults

RESOLUTION_COLUMNS = ["grid", "task", "source", "size_reference", "size_candidate", *EFFECT_COLUMNS[2:]]
PAIRED_ON = ["base", "fold", "repeat"]


def run_sizes(results: GridResults) -> list:
    """Each run's input size, in the order of ``results.records``: its scenario's own, else its record's protocol
    settings' (None where neither says)."""
    sizes = []
    for path in results.records["path"]:
        record = results.runs[path]
        size = record.image_size if record.image_size is not None else (record.config or {}).get("image_size")
        sizes.append(None if size is None else int(size))
    return sizes


def resolution_effects(records, n: int = 1000, seed: int = 0, level: float = 0.95):
    """Per grid, source and pair of image sizes: the mean paired AUC difference (larger size − smaller size) per
    scenario and over the scenarios (scenario "overall"), with its interval.

    Runs are paired when they share the grid, source, scenario (its backbone, strategy and learning rate), fold and
    repeat, and differ in image size; only runs that finished (or diverged with a checkpoint) with a finite AUC
    count. The estimate and the interval are ``grid.effects.paired_effects``': with 3 or more folds the t interval
    over the folds (estimate ± t(F − 1) · SE); with 2 folds none, and ``no_interval`` says why; on a single split
    the percentile interval over the test patients.

    Args:
        records: a grid folder, a folder of grids, or their ``GridResults``.
        n: bootstrap replicates (the one-fold interval over the test patients).
        seed: the resampling seed.
        level: the confidence level of the intervals.

    Returns:
        A DataFrame with ``paired_effects``' columns, and source, size_reference (the smaller size) and
        size_candidate (the larger); empty where no grid holds runs of one source at two sizes.
    """
    import pandas as pd

    results = GridResults.of(records)
    return results.cached(("resolution", n, seed, level), lambda: _effects(results, n, seed, level, pd))


def _effects(results: GridResults, n, seed, level, pd):
    table = results.records.assign(image_size=run_sizes(results))
    table["repeat"] = table["repeat"].fillna(0).astype(int)
    table["base"] = [Scenario(b, s, lr).id for b, s, lr in zip(table.backbone, table.strategy, table.learning_rate)]
    valid = table[
        table["status"].isin(("finished", "diverged"))
        & np.isfinite(table["auc"].astype(float))
        & table["image_size"].notna()
    ]
    rows = []
    for (grid, source), group in valid.groupby(["grid", "source"], sort=True):
        for small, large in combinations(sorted({int(s) for s in group["image_size"]}), 2):
            pairs = _pairs(group, small, large)
            if pairs.empty:
                continue
            name = f"{grid}/{source}/px{small}-px{large}"  # the bootstrap's seed; the rows name the grid itself
            found, _ = pair_effects(name, pairs, n, seed, level, results.predictions)
            rows += [
                {**row, "grid": grid, "source": source, "size_reference": small, "size_candidate": large}
                for row in found
            ]
    return pd.DataFrame(rows, columns=RESOLUTION_COLUMNS)


def _pairs(group, small: int, large: int):
    """The runs of one grid and source at ``large`` (candidate) and ``small`` (reference) paired by scenario, fold
    and repeat, in ``pair_effects``' columns."""
    candidate = group[group["image_size"] == large]
    reference = group[group["image_size"] == small][[*PAIRED_ON, "auc", "path"]]
    pairs = candidate.merge(reference, on=PAIRED_ON, suffixes=("_candidate", "_reference"))
    pairs = pairs.assign(
        scenario=pairs["base"], diff=pairs["auc_candidate"].astype(float) - pairs["auc_reference"].astype(float)
    )
    return pairs.sort_values(PAIRED_ON, kind="stable").reset_index(drop=True)
