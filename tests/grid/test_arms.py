"""Preprocessing as a factor: arms (a weight source fed the faithful or the corrected preprocessing), planned,
trained, paired and reported as sources are; checked against scikit-learn and scipy on records written by hand, and
from the command line (the test backbone)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from radtransfer import protocol, report
from radtransfer.grid import arms
from radtransfer.grid.records import RunRecord

ARMS = protocol.with_preprocessings(["radimagenet", "imagenet"])
SCENARIOS = [protocol.Scenario("resnet50", strategy, 1e-3) for strategy in ("freeze_all", "unfreeze_all")]
FOLDS = 3


def test_arm_names_parse_and_errors_name_the_source():
    assert arms.parse_arm("imagenet") == arms.Arm("imagenet", None)
    assert arms.parse_arm("ImageNet@Faithful").name == "ImageNet@faithful"
    assert arms.parse_arm(None).is_random and arms.arm_name("none@faithful") == "random@faithful"
    assert arms.parse_arm("imagenet@faithful").preprocessing_mode(faithful=False) == "radimagenet"
    assert arms.parse_arm("imagenet@corrected").preprocessing_mode(faithful=True) == "auto"
    assert arms.parse_arm("imagenet").preprocessing_mode(faithful=True) == "radimagenet"
    assert arms.parse_arm("imagenet").label(faithful=False) == "corrected"
    with pytest.raises(ValueError, match=r"'imagenet@faithfull'.*Did you mean \"faithful\"") as info:
        arms.parse_arm("imagenet@faithfull")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "sources, message",
    [(["imagenet@raw"], "Unknown preprocessing 'raw'"), (["imagenett@faithful"], 'Did you mean "imagenet"')],
)
def test_the_grid_command_refuses_a_bad_arm_before_anything_runs(cli_data, tmp_path, capsys, sources, message):
    from radtransfer.cli import main

    assert main(["grid", str(cli_data), "--out", str(tmp_path / "grid"), "--sources", "radimagenet", *sources]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error and not (tmp_path / "grid").exists()


def test_with_preprocessings_crosses_sources_once_and_keeps_random_bare():
    assert ARMS == ["radimagenet@corrected", "imagenet@corrected", "radimagenet@faithful", "imagenet@faithful"]
    assert protocol.with_preprocessings(["imagenet", None], ["faithful"]) == ["imagenet@faithful", "random"]
    with pytest.raises(ValueError, match="Unknown preprocessing 'raw'"):
        protocol.with_preprocessings(["imagenet"], ["raw"])


def test_comparisons_pair_sources_within_a_preprocessing_and_preprocessings_within_a_source():
    assert arms.comparisons(ARMS) == [
        ("radimagenet@corrected", "imagenet@corrected", "source"),
        ("radimagenet@faithful", "imagenet@faithful", "source"),
        ("radimagenet@corrected", "radimagenet@faithful", "preprocessing"),
        ("imagenet@corrected", "imagenet@faithful", "preprocessing"),
    ]
    assert arms.comparisons(["radimagenet", "imagenet"]) == [("radimagenet", "imagenet", "source")]
    # A bare source is fed the grid's preprocessing: corrected here, the faithful arm is its counterpart.
    assert arms.comparisons(["imagenet", "imagenet@faithful", None]) == [
        ("imagenet", "imagenet@faithful", "preprocessing")
    ]
    assert arms.comparisons(["imagenet", "imagenet@corrected"], faithful=True) == [
        ("imagenet@corrected", "imagenet", "preprocessing")
    ]


def test_arms_are_planned_as_sources_and_share_the_run_seed():
    runs = protocol.plan_runs([*ARMS, None], SCENARIOS, 2)
    assert {r.source for r in runs} == {*ARMS, "random"}
    assert len(runs) == 2 * (2 * 4 + 1)  # random initialisation: unfreeze_all only
    assert f"imagenet@faithful/{SCENARIOS[0].id}/fold1" in {r.id for r in runs}
    # The seed does not depend on the arm: the arms of one scenario, fold and repeat are paired.
    assert protocol.run_seed(726, SCENARIOS[0], 1) == protocol.run_seed(726, SCENARIOS[0], 1, 0)


class _Built(Exception):
    pass


def test_a_run_builds_its_arms_weights_with_its_arms_preprocessing(monkeypatch, tmp_path):
    """GridJob: an arm's run loads its base source's weight file and is fed the arm's preprocessing."""
    from radtransfer.grid import runs as grid_runs
    from radtransfer.grid.records import GridSpec

    built = []

    def fake_build(backbone, **kwargs):
        built.append(kwargs)
        raise _Built

    monkeypatch.setattr(grid_runs, "build_model", fake_build)
    monkeypatch.setattr(grid_runs.GridJob, "datasets", lambda self, fold, config, image_size=None: (None, None, None))
    spec = GridSpec("t", {}, ARMS, [s.to_dict() for s in SCENARIOS], None, False, "frozen", "bilinear", 8, ["a", "b"])
    weights = {(arm, "resnet50"): tmp_path / f"{arms.parse_arm(arm).source}.h5" for arm in ARMS}
    splits = [([0] * 6, [0] * 2, [0] * 2)]
    job = grid_runs.GridJob(tmp_path, spec, protocol.RADIMAGENET, splits, weights, False, "bilinear", "frozen", 0)
    for arm in ARMS:
        with pytest.raises(_Built):
            job.train_and_evaluate(protocol.Run(arm, SCENARIOS[0], 0))
    got = [(b["weights"].rsplit("/", 1)[-1], b["preprocessing"]) for b in built]
    assert got == [
        ("radimagenet.h5", "auto"),
        ("imagenet.h5", "auto"),
        ("radimagenet.h5", "radimagenet"),
        ("imagenet.h5", "radimagenet"),
    ]


def _write_grid(root, seed=0):
    """Four arms × 2 scenarios × 3 folds on the same test patients; imagenet@faithful's frozen runs near chance
    (the input-scale mismatch), the other arms' scores following the label with their own strength."""
    from radtransfer.stats import auc_score

    strength = {"radimagenet@corrected": 0.35, "imagenet@corrected": 0.3, "radimagenet@faithful": 0.35}
    rng = np.random.default_rng(seed)
    protocol_spec = {"sources": ARMS, "faithful": False, "task": "task"}
    (root / "task").mkdir(parents=True)
    (root / "task" / "grid.json").write_text(json.dumps(protocol_spec))
    for fold in range(FOLDS):
        y = np.repeat([0, 1], 12)
        patients = np.array([f"f{fold}p{i}" for i in range(24)])
        for scenario in SCENARIOS:
            for arm in ARMS:
                frozen_collapse = arm == "imagenet@faithful" and scenario.strategy == "freeze_all"
                s = 0.02 if frozen_collapse else strength.get(arm, 0.3)
                scores = np.round(np.clip(s * y + rng.uniform(0, 0.5, len(y)), 0, 1), 2)
                probabilities = np.stack([1 - scores, scores], 1)
                folder = root / "task" / "runs" / arm / scenario.id / f"fold{fold}"
                folder.mkdir(parents=True)
                RunRecord(
                    run_id=f"{arm}/{scenario.id}/fold{fold}",
                    task="task",
                    source=arm,
                    **scenario.to_dict(),
                    scenario=scenario.id,
                    fold=fold,
                    metrics={"auc": auc_score(y, probabilities), "auc_ci": [0.5, 0.9], "accuracy": 0.7},
                    best_val_loss=0.5,
                ).write(folder)
                np.savez(folder / "predictions.npz", y_true=y, probabilities=probabilities, patient_ids=patients)


def _auc(root, arm, scenario, fold):
    data = np.load(root / "task" / "runs" / arm / scenario.id / f"fold{fold}" / "predictions.npz")
    return roc_auc_score(data["y_true"], data["probabilities"][:, 1])


def test_report_compares_every_pair_of_arms_against_sklearn_and_scipy(tmp_path):
    _write_grid(tmp_path)
    table = report.comparisons(tmp_path, n_boot=200, equivalence_margin=0.05)
    assert list(zip(table["candidate"], table["reference"], table["factor"])) == arms.comparisons(ARMS)
    for row in table.itertuples():
        runs = np.array(
            [
                [_auc(tmp_path, row.candidate, s, f) - _auc(tmp_path, row.reference, s, f) for f in range(FOLDS)]
                for s in SCENARIOS
            ]
        )
        a = np.array([[_auc(tmp_path, row.candidate, s, f) for f in range(FOLDS)] for s in SCENARIOS]).mean(1)
        b = np.array([[_auc(tmp_path, row.reference, s, f) for f in range(FOLDS)] for s in SCENARIOS]).mean(1)
        assert row.diff == pytest.approx((a - b).mean(), abs=1e-12)
        assert row.auc_candidate == pytest.approx(a.mean(), abs=1e-12)
        assert row.ttest_p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
        assert row.paired_diff == pytest.approx(runs.mean(1).mean(), abs=1e-12)
        assert (row.paired_wins, row.paired_losses) == ((runs > 0).sum(), (runs < 0).sum())
        assert row.paired_low <= row.paired_diff <= row.paired_high and row.tost_margin == 0.05
    fix = table.set_index(["candidate", "reference"]).loc[("imagenet@corrected", "imagenet@faithful")]
    assert fix["factor"] == "preprocessing" and fix["paired_diff"] > 0.1  # the faithful arm's frozen collapse


def test_summary_shows_arms_as_rows_and_flags_the_collapsed_faithful_arm(tmp_path):
    _write_grid(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = report.summarize(tmp_path, n_boot=50, mixed=False).set_index("source")
    assert list(table.index) == sorted(ARMS)
    assert table.loc["imagenet@faithful", "preprocessing"] == "faithful"
    assert table.loc["imagenet@corrected", "preprocessing"] == "corrected"
    assert table["frozen_collapse"].to_dict() == {arm: arm == "imagenet@faithful" for arm in sorted(ARMS)}
    frozen = [_auc(tmp_path, "imagenet@faithful", SCENARIOS[0], f) for f in range(FOLDS)]
    assert table.loc["imagenet@faithful", "frozen_auc"] == pytest.approx(np.mean(frozen), abs=1e-12)
    assert any("imagenet@faithful's freeze-all runs" in str(w.message) for w in caught)


def test_report_writes_the_comparisons_and_effects_tables(tmp_path):
    _write_grid(tmp_path)
    written = report.write(tmp_path, formats=("csv",))
    assert {"comparisons.csv", "effects.csv"} <= set(written)
    frame = pd.read_csv(written["comparisons.csv"])
    assert len(frame) == 4 and set(frame["factor"]) == {"source", "preprocessing"}


def test_a_grid_with_faithful_and_corrected_arms_from_the_command_line(cli_data, tmp_path, keras2_files, capsys):
    from radtransfer.cli import main
    from radtransfer.models.presets import get_preset

    weights = tmp_path / "weights"
    keras2_files.place("test_tiny", weights, "RadImageNet-TestTiny_notop.h5")
    keras2_files.place("test_tiny", weights, get_preset("test_tiny", "imagenet").files[0], kind="weights")
    grid = tmp_path / "grid"
    common = ["--epochs", "1", "--image-size", "32", "--batch-size", "16", "--run-eagerly"]
    common += ["--weights-dir", str(weights)]
    argv = ["grid", str(cli_data), "--out", str(grid), "--preprocessings", "corrected", "faithful"]
    argv += ["--backbones", "test_tiny", "--max-scenarios", "1", "--no-audit", *common]
    assert main(argv) == 0
    records = {p.parent.parent.parent.name: RunRecord.read(p) for p in grid.rglob("record.json")}
    assert set(records) == set(ARMS)
    # The arm decides the input: ImageNet's test_tiny expects "caffe" (as ResNet50's); the faithful arm is fed the
    # reference's.
    assert records["imagenet@corrected"].preprocessing == "caffe"
    assert records["imagenet@faithful"].preprocessing == "radimagenet"
    assert records["radimagenet@corrected"].preprocessing == records["radimagenet@faithful"].preprocessing
    assert records["imagenet@faithful"].weights_sha256 == records["imagenet@corrected"].weights_sha256
    assert len({r.run_seed for r in records.values()}) == 1  # paired: one seed for the four arms
    capsys.readouterr()
    assert main(["report", str(grid), "--formats", "csv"]) == 0
    out = capsys.readouterr().out
    assert "comparisons.csv" in out  # the wide tables are files only; the summary fits 80 columns, arms whole
    assert all(len(line) <= 80 for line in out.splitlines() if not line.startswith("/")), out
    assert all(f"  {arm} " in out for arm in ARMS), out
    frame = pd.read_csv(grid / "report" / "comparisons.csv")
    assert list(zip(frame["candidate"], frame["reference"])) == [c[:2] for c in arms.comparisons(ARMS)]
    runs = pd.read_csv(grid / "report" / "runs.csv").set_index("source")
    fix = frame.set_index("candidate").loc["imagenet@corrected"]
    assert fix["diff"] == pytest.approx(runs.loc["imagenet@corrected", "auc"] - runs.loc["imagenet@faithful", "auc"])
