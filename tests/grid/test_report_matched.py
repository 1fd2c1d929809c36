"""Every difference the report gives is over matched runs (issue 28, defect 3): when a run fails, its partner in the
other source leaves the comparison too, and each row says how many pairs were dropped. Checked against the same
numbers computed by hand (numpy, scipy) over the matched (scenario, fold, repeat) pairs; and a grid's numbers do not
depend on the other grids in the folder summarized (7b)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from radtransfer import protocol, report
from radtransfer.grid.records import GridSpec, RunRecord

SCENARIOS = [
    protocol.Scenario("resnet50", "freeze_all", 1e-3),
    protocol.Scenario("resnet50", "unfreeze_all", 1e-4),
    protocol.Scenario("densenet121", "freeze_all", 1e-3),
]
SOURCES = ("radimagenet", "imagenet")
FOLDS = 4
FAILED = {("radimagenet", 0, 1), ("imagenet", 2, 0)} | {("radimagenet", s, 3) for s in range(3)}  # (source, s, fold)


def _auc(source, s, fold) -> float:
    """Folds differ in difficulty (fold 3 is the easiest), so leaving a fold out of one source only moves its mean."""
    gain = 0.02 + 0.005 * s + 0.001 * (s == fold) if source == "radimagenet" else 0.0
    return round(0.70 + 0.05 * fold + 0.01 * s + gain - 0.004 * (s == fold), 4)


def _val_loss(s, fold) -> float:
    return 0.5 - 0.1 * ((s + fold) % 3)  # which scenario the practitioner picks differs by fold


def _write_grid(root, task="task", sources=SOURCES):
    (root / task).mkdir(parents=True, exist_ok=True)
    GridSpec(
        task=task,
        config={},
        sources=list(sources),
        scenarios=[s.to_dict() for s in SCENARIOS],
        folds=FOLDS,
        faithful=False,
        bn="frozen",
        interpolation="bilinear",
        n_images=10,
        class_names=["a", "b"],
    ).write(root / task)
    for source in sources:
        for s, scenario in enumerate(SCENARIOS):
            for fold in range(FOLDS):
                failed = (source.split("@")[0], s, fold) in FAILED
                folder = root / task / "runs" / source / scenario.id / f"fold{fold}"
                folder.mkdir(parents=True, exist_ok=True)
                auc = _auc(source.split("@")[0], s, fold)
                RunRecord(
                    run_id=f"{source}/{scenario.id}/fold{fold}",
                    task=task,
                    source=source,
                    **scenario.to_dict(),
                    scenario=scenario.id,
                    fold=fold,
                    status="failed" if failed else "finished",
                    metrics=None if failed else {"auc": auc, "auc_ci": [auc - 0.05, auc + 0.05], "accuracy": 0.7},
                    best_val_loss=None if failed else _val_loss(s, fold),
                ).write(folder)


def _matched(scenarios=range(3)):
    """Per scenario, both sources' mean AUC over the folds where neither run failed, by hand."""
    a, b = [], []
    for s in scenarios:
        folds = [f for f in range(FOLDS) if not any((source, s, f) in FAILED for source in SOURCES)]
        a.append(np.mean([_auc("radimagenet", s, f) for f in folds]))
        b.append(np.mean([_auc("imagenet", s, f) for f in folds]))
    return np.array(a), np.array(b)


def test_summary_differences_are_over_matched_pairs_when_runs_fail(tmp_path):
    """Before: each source's scenario mean was over its own finished runs, so fold 3 (the easiest, failed for
    RadImageNet) stayed in ImageNet's mean: diff_vs_imagenet −0.0084 where the matched pairs give +0.0254."""
    _write_grid(tmp_path)
    table = report.summarize(tmp_path, mixed=False, n_boot=50).set_index("source")
    row = table.loc["radimagenet"]
    a, b = _matched()
    assert row["diff_vs_imagenet"] == pytest.approx((a - b).mean(), abs=1e-12)
    assert row["ttest_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-9)
    assert row["n_pairs"] == 3 and row["n_pairs_dropped"] == len(FAILED)
    assert row["paired_diff"] == pytest.approx(row["diff_vs_imagenet"], abs=1e-12)  # the same pairs, same weights
    # The practitioner's difference over the folds where both sources chose (fold 3: RadImageNet has no run).
    chosen = {}
    for source in SOURCES:
        for fold in range(FOLDS):
            valid = [s for s in range(3) if (source, s, fold) not in FAILED]
            if valid:
                chosen[(source, fold)] = _auc(source, min(valid, key=lambda s: _val_loss(s, fold)), fold)
    both = [f for f in range(FOLDS) if ("radimagenet", f) in chosen and ("imagenet", f) in chosen]
    expected = np.mean([chosen[("radimagenet", f)] - chosen[("imagenet", f)] for f in both])
    assert row["practitioner_diff"] == pytest.approx(expected, abs=1e-12)
    # Each source is still described over its own runs.
    own = [
        np.mean([_auc("imagenet", s, f) for f in range(FOLDS) if ("imagenet", s, f) not in FAILED]) for s in range(3)
    ]
    assert table.loc["imagenet", "mean_auc"] == pytest.approx(np.mean(own), abs=1e-12)


def test_breakdown_differences_are_over_matched_pairs(tmp_path):
    _write_grid(tmp_path)
    table = report.breakdown(tmp_path, "backbone").set_index(["source", "backbone"])
    for backbone, scenarios in (("resnet50", [0, 1]), ("densenet121", [2])):
        a, b = _matched(scenarios)
        row = table.loc[("radimagenet", backbone)]
        assert row["diff_vs_imagenet"] == pytest.approx((a - b).mean(), abs=1e-12)
        dropped = sum(1 for f in range(FOLDS) for s in scenarios if any((x, s, f) in FAILED for x in SOURCES))
        assert (row["n_pairs"], row["n_pairs_dropped"]) == (len(scenarios), dropped)
        assert np.isnan(table.loc[("imagenet", backbone), "diff_vs_imagenet"])


def test_comparisons_of_arms_are_over_matched_pairs(tmp_path):
    arms = ["radimagenet@corrected", "imagenet@corrected"]
    _write_grid(tmp_path, sources=arms)
    table = report.comparisons(tmp_path, n_boot=50)
    assert list(zip(table["candidate"], table["reference"])) == [tuple(arms)]
    row = table.iloc[0]
    a, b = _matched()
    assert (row["auc_candidate"], row["auc_reference"]) == pytest.approx((a.mean(), b.mean()), abs=1e-12)
    assert row["diff"] == pytest.approx((a - b).mean(), abs=1e-12)
    assert row["ttest_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert row["n_pairs_dropped"] == len(FAILED)


def test_a_grids_summary_is_the_same_alone_and_beside_another_grid(tmp_path):
    """Before: one random generator served every grid in the folder, so adding a grid moved paired_high (and with
    it TOST). Here on a single split, whose interval is the bootstrap's."""
    alone = tmp_path / "alone"
    _write_grid(alone, task="B")
    both = tmp_path / "both"
    _write_grid(both, task="A")  # summarized first: it used to take the first draws of the shared generator
    _write_grid(both, task="B")
    for root in (alone, both):  # one fold: every run's fold set to 0, predictions so that patients are resampled
        for path in root.rglob("record.json"):
            record = RunRecord.read(path)
            if record.fold != 0:
                continue
            rng = np.random.default_rng(len(record.scenario) + (record.source == "radimagenet"))
            y = np.repeat([0, 1], 15)
            p = np.clip(0.3 * y + rng.uniform(0, 0.7, 30), 0, 1)
            np.savez(path.parent / "predictions.npz", y_true=y, probabilities=np.stack([1 - p, p], 1))
        for path in root.rglob("fold[123]"):
            for file in path.iterdir():
                file.unlink()
            path.rmdir()
    first = report.summarize(alone, mixed=False, n_boot=200, equivalence_margin=0.05).set_index(["grid", "source"])
    second = report.summarize(both, mixed=False, n_boot=200, equivalence_margin=0.05).set_index(["grid", "source"])
    mine, theirs = first.loc[("B", "radimagenet")], second.loc[("B", "radimagenet")]
    for column in ("paired_diff", "paired_low", "paired_high", "tost_low", "tost_high", "tost_p"):
        assert mine[column] == theirs[column], column
    assert mine["paired_covers"].startswith("test patients only")
