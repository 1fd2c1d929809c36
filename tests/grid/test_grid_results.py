"""GridResults (grid.records): a grid folder read once, every report table and figure made from it, each paired effect
computed once (issue 29, item 5). Reads are counted at the file system (``Path.read_text``, ``np.load``), bootstraps at
``grid.effects._grid_effects``; the numbers are checked against the same functions fed a plain records table."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radtransfer import plots, protocol, report
from radtransfer.grid import effects
from radtransfer.grid.pairs import compare_runs
from radtransfer.grid.records import GridSpec, RunRecord, grid_specs, load_records, pair_path
from radtransfer.utils.io import write_json_atomic

SCENARIOS = [protocol.Scenario("resnet50", "freeze_all", 1e-3), protocol.Scenario("densenet121", "unfreeze_all", 1e-4)]
SOURCES = {"radimagenet": 0.35, "imagenet": 0.25}  # how strongly each source's scores follow the label
FOLDS = 3


def _write_grid(root: Path) -> Path:
    """One grid (grid.json, 2 scenarios × 3 folds × 2 sources with predictions), PairRecords for fold 0 only (the
    report computes the others from the predictions) and one timing.json."""
    from radtransfer.stats.auc import auc_score

    grid = root / "task"
    grid.mkdir(parents=True)
    GridSpec(
        task="task",
        config={},
        sources=list(SOURCES),
        scenarios=[s.to_dict() for s in SCENARIOS],
        folds=FOLDS,
        faithful=False,
        bn="frozen",
        interpolation="bilinear",
        n_images=48,
        class_names=["a", "b"],
    ).write(grid)
    rng = np.random.default_rng(0)
    for fold in range(FOLDS):
        y = np.repeat([0, 1], 12)
        patients = np.array([f"f{fold}p{i // 2}" for i in range(len(y))])
        for scenario in SCENARIOS:
            for source, strength in SOURCES.items():
                scores = np.round(np.clip(strength * y + rng.uniform(0, 0.6, len(y)), 0, 1), 2)
                probabilities = np.stack([1 - scores, scores], 1)
                folder = grid / "runs" / source / scenario.id / f"fold{fold}"
                folder.mkdir(parents=True)
                RunRecord(
                    run_id=f"{source}/{scenario.id}/fold{fold}",
                    task="task",
                    source=source,
                    **scenario.to_dict(),
                    scenario=scenario.id,
                    fold=fold,
                    metrics={"auc": auc_score(y, probabilities), "auc_ci": [0.5, 0.9], "accuracy": 0.7},
                    best_val_loss=float(rng.uniform(0.3, 0.7)),
                ).write(folder)
                np.savez(folder / "predictions.npz", y_true=y, probabilities=probabilities, patient_ids=patients)
    for scenario in SCENARIOS:
        dirs = [grid / "runs" / source / scenario.id / "fold0" for source in SOURCES]
        pair = compare_runs("task", scenario.id, 0, *SOURCES, *dirs)
        path = pair_path(grid, scenario.id, 0, *SOURCES)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, pair.to_dict())
    write_json_atomic(grid / "runs" / "imagenet" / SCENARIOS[0].id / "fold0" / "timing.json", {"seconds": 3.0})
    return grid


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    return _write_grid(tmp_path_factory.mktemp("grid"))


@pytest.fixture
def counted(monkeypatch):
    """Counts every read of a file (``Path.read_text``: records, grid.json, timing, pairs; ``np.load``: predictions)
    and every bootstrap of one grid's paired effect."""
    reads, bootstraps = collections.Counter(), collections.Counter()
    read_text, load, grid_effects = Path.read_text, np.load, effects._grid_effects

    def counting_read_text(self, *args, **kwargs):
        reads[Path(self).name, str(self)] += 1
        return read_text(self, *args, **kwargs)

    def counting_load(file, *args, **kwargs):
        reads[Path(file).name, str(file)] += 1
        return load(file, *args, **kwargs)

    def counting_grid_effects(grid, *args, **kwargs):
        bootstraps[grid] += 1
        return grid_effects(grid, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting_read_text)
    monkeypatch.setattr(np, "load", counting_load)
    monkeypatch.setattr(effects, "_grid_effects", counting_grid_effects)
    return reads, bootstraps


def _per_file(reads) -> dict:
    """{file name: sorted set of read counts over the files of that name} (the grid's files only)."""
    counts = collections.defaultdict(set)
    for (name, _), n in reads.items():
        counts[name].add(n)
    return {name: sorted(n) for name, n in counts.items() if name != "direct_url.json"}


def test_report_reads_each_file_of_the_grid_once_and_bootstraps_each_pair_once(grid, tmp_path, counted):
    """Before GridResults: write() read every record.json 10 times (8 load_records, 2 for the validation losses),
    timing.json 8, grid.json and each PairRecord twice, each run's predictions 3 times, and ran the 1,000-replicate
    bootstrap of the one (radimagenet, imagenet) pair 3 times (summary, effects, comparisons)."""
    reads, bootstraps = counted
    written = report.write(grid, formats=("csv",), report_dir=tmp_path / "report", equivalence_margin=0.05)
    assert {"summary.csv", "effects.csv", "comparisons.csv", "pairs.csv", "runs.csv"} <= set(written)
    assert _per_file(reads) == {
        "record.json": [1],
        "grid.json": [1],
        "timing.json": [1],
        "radimagenet__vs__imagenet.json": [1],
        "predictions.npz": [1],
    }
    assert sum(1 for name, _ in reads if name == "record.json") == len(SCENARIOS) * FOLDS * len(SOURCES)
    assert dict(bootstraps) == {".": 1}


def test_tables_and_figures_share_one_read_of_the_grid(grid, tmp_path, counted):
    """The command's path: one GridResults for the tables and the figures; the figures reuse the predictions."""
    from radtransfer.grid.records import GridResults

    reads, bootstraps = counted
    results = GridResults(grid)
    computed = report.tables(results)
    report.write(results, formats=("md",), report_dir=tmp_path / "report", computed=computed)
    figures = plots.grid_figures(results, tmp_path / "figures")
    assert any(f.endswith("roc_curves.png") for f in figures) and any(f.endswith("reliability.png") for f in figures)
    assert set(n for counts in _per_file(reads).values() for n in counts) == {1}
    assert dict(bootstraps) == {".": 1}


def test_grid_results_holds_what_load_records_and_grid_specs_read(grid):
    from radtransfer.grid.records import GridResults

    results = GridResults(grid)
    pd.testing.assert_frame_equal(results.records, load_records(grid))
    assert results.specs == grid_specs(grid) and results.grids == ["."]
    assert GridResults.of(results) is results and GridResults.of(grid).records.equals(results.records)
    assert set(results.runs) == set(results.records["path"])
    # The validation losses from the records held, as effects.best_val_losses reads them from record.json.
    pd.testing.assert_frame_equal(results.with_val_losses(), effects.best_val_losses(load_records(grid)))
    # A run's predictions: its arrays, read once; None without.
    first = results.records["path"].iloc[0]
    data = np.load(Path(first) / "predictions.npz")
    got = results.predictions(first)
    assert set(got) == set(data.files) and all(np.array_equal(got[k], data[k]) for k in data.files)
    assert results.predictions(first) is got and results.predictions(grid) is None
    # PairRecords: fold 0's as written; None where the grid wrote none.
    assert results.pair(pair_path(grid, SCENARIOS[0].id, 0, *SOURCES)).fold == 0
    assert results.pair(pair_path(grid, SCENARIOS[0].id, 1, *SOURCES)) is None
    assert results.data_manifest() is None  # this hand-written grid has no data.csv
    # One grid's view shares the cache.
    view = results.grid(".")
    assert view.records.equals(results.records) and view.cached("key", lambda: 2) == 2
    assert results.cached("key", lambda: 3) == 2


def test_tables_from_grid_results_equal_the_same_functions_fed_a_records_table(grid):
    """The cached effects are those of ``paired_effects`` on ``load_records``'s table (no GridResults, no cache), and
    the report's tables the same from a path and from a GridResults."""
    from radtransfer.grid.records import GridResults

    records = load_records(grid)
    plain, plain_draws = effects.paired_effects(records, n=50, seed=3, return_draws=True)
    results = GridResults(grid)
    cached, draws = effects.paired_effects(results, n=50, seed=3, return_draws=True)
    pd.testing.assert_frame_equal(cached, plain)
    assert draws.keys() == plain_draws.keys()
    assert all(np.array_equal(draws[k], plain_draws[k], equal_nan=True) for k in draws)
    pd.testing.assert_frame_equal(effects.practitioner(results), effects.practitioner(records))
    by_path = report.summarize(grid, n_boot=50, mixed=False, equivalence_margin=0.05)
    by_results = report.summarize(results, n_boot=50, mixed=False, equivalence_margin=0.05)
    pd.testing.assert_frame_equal(by_path, by_results)
