"""Pairs: a scenario's runs from two weight sources, compared on the same test images (DeLong, or a paired
patient-level bootstrap), and the PairRecords a grid writes once both runs of a pair are recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..stats.auc import compare_aucs
from ..utils.io import write_json_atomic
from .records import PREDICTIONS, RECORD_FILE, PairRecord, RunRecord, pair_path, run_dir


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
    if not np.array_equal(a["y_true"], b["y_true"]):
        raise ValueError(f"The runs in {candidate_dir} and {reference_dir} were not scored on the same test images.")
    groups = a["patient_ids"] if "patient_ids" in a.files and len(a["patient_ids"]) else None
    test = compare_aucs(a["y_true"], a["probabilities"], b["probabilities"], groups=groups, seed=seed)
    return PairRecord(
        task=task,
        scenario=scenario_id,
        fold=int(fold),
        candidate=candidate,
        reference=reference,
        method=test["method"],
        unit=test["unit"],
        auc_candidate=test["auc_a"],
        auc_reference=test["auc_b"],
        diff=test["diff"],
        p=test["p"],
        ci=test.get("ci"),
        repeat=int(repeat),
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
