"""The frozen-backbone sanity check: a weight source whose freeze-all runs collapse far below the other sources'
is the symptom of an input-scale mismatch (weights fed inputs on another scale than they were trained on, the
reference code's ImageNet-with-RadImageNet-preprocessing bug), not evidence about the weights.

With the backbone frozen only the head learns, so the features alone decide: a source whose features are fine but
whose inputs are scaled wrongly falls towards chance while the others do not. Fine-tuning can hide the mismatch
(the backbone adapts), which is why the check looks at ``freeze_all`` alone.

Chance alone can open the gap on few test patients, so the check judges only sources whose freeze-all runs and the
compared source's hold at least ``MIN_UNITS`` test patients between them (images where patients are unknown):
under chance a mean AUC over N patients has SD ≈ sqrt(1 / (3N)) (Hanley and McNeil's variance at AUC 0.5 with
balanced classes, the runs' test folds disjoint), the difference of two sources' means sqrt(2 / (3N)), and the
``GAP`` must be at least twice that: N ≥ 2 / (3 (GAP / 2)²) = 119. Five folds of 5 patients (25) are not judged.
Records without test counts (written by hand, or before runs recorded them) are judged as before.
"""

from __future__ import annotations

import numpy as np

from .arms import FAITHFUL, parse_arm

FREEZE_ALL = "freeze_all"
GAP = 0.15  # AUC points below the best other source ...
FLOOR = 0.65  # ... and at most this AUC: a collapse
MIN_UNITS = int(np.ceil(2 / (3 * (GAP / 2) ** 2)))  # test patients a source's freeze-all runs need (see above)


def _test_units(frozen):
    """Each run's test patients (its test images where patients are unknown; 0 where neither was recorded)."""
    columns = [c for c in ("n_test_patients", "n_test") if c in frozen]
    if not columns:
        return 0
    units = frozen[columns[0]].astype(float)
    for column in columns[1:]:
        units = units.fillna(frozen[column].astype(float))
    return units.fillna(0)


def frozen_sanity(records, gap: float = GAP, floor: float = FLOOR):
    """Per grid and weight source, the mean test AUC of its freeze-all runs and whether it collapsed.

    Args:
        records: the DataFrame of ``grid.records.load_records`` (columns grid, source, strategy, status, auc).
        gap: a source collapsed when its freeze-all mean AUC is at least ``gap`` below the best other source's
            of the same grid ...
        floor: ... and at most ``floor``, both sources' freeze-all runs holding at least ``MIN_UNITS`` test
            patients (see the module's docstring).

    Returns:
        A DataFrame with grid, source, frozen_auc (mean over its valid freeze-all runs), frozen_runs, best_other
        (the best other source's frozen_auc), collapsed (bool) and message (empty unless collapsed).
    """
    import pandas as pd

    columns = ["grid", "source", "frozen_auc", "frozen_runs", "best_other", "collapsed", "message"]
    if records.empty or "strategy" not in records:
        return pd.DataFrame(columns=columns)
    frozen = records[(records["strategy"] == FREEZE_ALL) & records["status"].isin(("finished", "diverged"))]
    frozen = frozen[np.isfinite(frozen["auc"].astype(float))].assign(units=_test_units)
    rows = []
    for grid, runs in frozen.groupby("grid"):
        means = runs.groupby("source").agg(mean=("auc", "mean"), size=("auc", "size"), units=("units", "sum"))
        for source, (mean, size, units) in means[["mean", "size", "units"]].iterrows():
            others = means.drop(index=source)
            best = float(others["mean"].max()) if len(others) else np.nan
            best_units = float(others.loc[others["mean"].idxmax(), "units"]) if len(others) else np.nan
            enough = units == 0 or min(units, best_units) >= MIN_UNITS  # 0: no counts recorded
            collapsed = bool(len(others) and enough and mean <= floor and best - mean >= gap)
            message = (
                f"{source}'s freeze-all runs reach AUC {mean:.3f} against {best:.3f} for the best other source: "
                "the symptom of inputs on another scale than its weights were trained on (check the preprocessing "
                "of its weight files, docs/weights.md), not evidence about the weights"
                + (
                    "; this arm is fed the reference scripts' preprocessing on purpose, so the collapse is the "
                    "reference's bug, measured"
                    if parse_arm(source).preprocessing == FAITHFUL
                    else ""
                )
                if collapsed
                else ""
            )
            rows.append((grid, source, float(mean), int(size), best, collapsed, message))
    return pd.DataFrame(rows, columns=columns)
