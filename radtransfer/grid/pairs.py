"""Pairs: a scenario's runs from two weight sources, compared on the same test images (DeLong, or a paired
patient-level bootstrap), the PairRecords a grid writes once both runs of a pair are recorded, and the table of a
grid's pairs the report reads (``pair_table``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..stats.auc import compare_aucs
from ..utils.io import write_json_atomic
from .records import PREDICTIONS, RECORD_FILE, GridResults, PairRecord, RunRecord, pair_path, run_dir


def compare_runs(task, scenario_id, fold, candidate, reference, candidate_dir, reference_dir, seed=0, repeat=0):
    """The paired comparison of two runs' test predictions (DeLong, or a paired patient-level bootstrap).

    Args:
        task: the grid's task, stored in the PairRecord.
        scenario_id: the scenario both runs trained.
        fold: their fold.
        candidate: the first weight source (``candidate_dir``'s run).
        reference: the second weight source (``reference_dir``'s run).
        candidate_dir: the candidate run's folder (with its predictions).
        reference_dir: the reference run's folder.
        seed: the seed of a bootstrap.
        repeat: the repeat both runs are (the same seed: a pair is never two repeats).

    Returns:
        The PairRecord.
    """
    a = np.load(Path(candidate_dir) / PREDICTIONS)
    b = np.load(Path(reference_dir) / PREDICTIONS)
    names = {"task": task, "scenario": scenario_id, "candidate": candidate, "reference": reference}
    return _compare(a, b, (candidate_dir, reference_dir), seed, fold=int(fold), repeat=int(repeat), **names)


def _compare(a, b, folders, seed, **names) -> PairRecord:
    """The PairRecord of two runs' predictions ``a`` and ``b`` (mappings of arrays), named by ``names`` (task,
    scenario, fold, candidate, reference, repeat); ``folders`` name the runs in the error."""
    if not np.array_equal(a["y_true"], b["y_true"]):
        raise ValueError(f"The runs in {folders[0]} and {folders[1]} were not scored on the same test images.")
    groups = a["patient_ids"] if "patient_ids" in a and len(a["patient_ids"]) else None
    test = compare_aucs(a["y_true"], a["probabilities"], b["probabilities"], groups=groups, seed=seed)
    return PairRecord(
        **names,
        method=test["method"],
        unit=test["unit"],
        auc_candidate=test["auc_a"],
        auc_reference=test["auc_b"],
        diff=test["diff"],
        p=test["p"],
        ci=test.get("ci"),
        n_units=test.get("n_units"),
        no_interval=test.get("no_interval"),
    )


def write_pairs(grid_dir, spec, run, seed: int) -> None:
    """Once both runs of a (scenario, fold, repeat) pair of sources are recorded, compares them on the same test
    images and writes the PairRecord (the first of ``spec.sources`` is the candidate). Source A's repeat r is
    paired with source B's repeat r only: the two ran with the same seed."""
    sources = list(spec.sources)
    for other in sources:
        if other == run.source:
            continue
        candidate, reference = (
            (run.source, other) if sources.index(run.source) < sources.index(other) else (other, run.source)
        )
        dirs = {s: run_dir(grid_dir, s, run.scenario.id, run.fold, run.repeat) for s in (candidate, reference)}
        if not all((d / RECORD_FILE).exists() for d in dirs.values()):
            continue
        records = {s: RunRecord.read(d / RECORD_FILE) for s, d in dirs.items()}
        if any(r.status == "failed" for r in records.values()):
            continue
        pair = compare_runs(
            spec.task,
            run.scenario.id,
            run.fold,
            candidate,
            reference,
            dirs[candidate],
            dirs[reference],
            seed=seed,
            repeat=run.repeat,
        )
        path = pair_path(grid_dir, run.scenario.id, run.fold, candidate, reference, run.repeat)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, pair.to_dict())


PAIR_COLUMNS = ["grid", "task", "scenario", "fold", "repeat", "method", "unit", "diff", "p", "no_interval"]


def pair_table(results: GridResults, candidate: str = "radimagenet", reference: str = "imagenet"):
    """Per (grid, scenario, fold, repeat): the two sources' AUCs on the same test images and their paired test, from
    the grid's ``pairs/`` records; pairs a grid did not write (older grids) are computed from the runs' saved
    predictions (each read once, through ``results``). Pairs whose runs failed, or lack a partner, are left out.

    Returns:
        A DataFrame with grid, task, scenario, fold, repeat, method, unit, auc_<candidate>, auc_<reference>, diff, p,
        no_interval (why a pair has no test under the minimum-units rule, ``stats.too_few``: its p is then NaN and
        it counts as neither source's win; None where it has one).
    """
    import pandas as pd

    records = results.records
    columns = [*PAIR_COLUMNS[:7], f"auc_{candidate}", f"auc_{reference}", *PAIR_COLUMNS[7:]]
    rows = []
    for row in records[records["source"] == candidate].itertuples(index=False):
        repeat = int(getattr(row, "repeat", 0) or 0)
        partner = records[
            (records["grid"] == row.grid)
            & (records["source"] == reference)
            & (records["scenario"] == row.scenario)
            & (records["fold"] == row.fold)
            & (records["repeat"] == repeat)
        ]
        if partner.empty or row.status == "failed" or partner["status"].iloc[0] == "failed":
            continue
        pair = _read_or_compare(results, row, partner["path"].iloc[0], candidate, reference, repeat)
        if pair is None:
            continue
        rows.append(
            {
                **{name: getattr(row, name) for name in ("grid", "task", "scenario", "fold")},
                "repeat": repeat,
                "method": pair.method,
                "unit": pair.unit,
                f"auc_{candidate}": pair.auc_candidate,
                f"auc_{reference}": pair.auc_reference,
                "diff": pair.diff,
                "p": np.nan if pair.p is None else pair.p,  # null in the file: no test (stats.too_few)
                "no_interval": pair.no_interval,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def _read_or_compare(results, row, other, candidate, reference, repeat) -> "PairRecord | None":
    """The grid's PairRecord of a run (``row``) and its partner (run folder ``other``), or one computed from their
    predictions where the grid wrote none; None without predictions, or (with a warning) when they do not match."""
    pair = results.pair(pair_path(Path(row.path).parents[3], row.scenario, row.fold, candidate, reference, repeat))
    if pair is not None:
        return pair
    a = results.predictions(row.path)
    b = results.predictions(other) if a is not None else None
    if a is None or b is None:
        return None
    names = {"task": row.task, "scenario": row.scenario, "candidate": candidate, "reference": reference}
    try:
        return _compare(a, b, (row.path, other), 0, fold=int(row.fold), repeat=int(repeat), **names)
    except ValueError as exc:
        warnings.warn(f"Not compared: {exc}", stacklevel=4)
        return None
