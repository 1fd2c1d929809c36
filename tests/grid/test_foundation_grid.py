"""A foundation encoder as an arm of a grid ("dinov2:<preset>"): it replaces the scenario's CNN, trains on the same
splits and seeds as the CNN sources, and is paired with them on the same test images; a tiny grid of tf-keras-written
RadImageNet and ImageNet files for the test backbone and a tiny DINOv2 preset folder saved by keras-hub."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import radtransfer as rt
from radtransfer import protocol, report
from radtransfer.grid import arms
from radtransfer.grid.records import RunRecord, load_records, run_dir
from radtransfer.models.presets import get_preset

# The frozen probe and the probe-then-fine-tune schedule: issue 31's question. The same test with all four strategies
# ("freeze_all", "linear_probe", "lp_ft", "unfreeze_all": 36 runs, about 58 s here) gave its closing note's table.
STRATEGIES = ("linear_probe", "lp_ft")
ENCODER = "dinov2:tiny_dinov2"
SOURCES = ("radimagenet", ENCODER)  # with "imagenet" too, each pair of the three (the closing note's table)
FOLDS = 3


def test_foundation_arms_parse_compare_and_refuse_in_one_line():
    arm = arms.parse_arm("DINOv2:my_dinov2")
    assert (arm.name, arm.encoder, arm.preset) == ("dinov2:my_dinov2", "dinov2", "my_dinov2")
    assert arm.preprocessing_mode(faithful=True) == "auto" and arm.label(faithful=True) == "corrected"
    assert arms.parse_arm("imagenet").encoder is None
    assert arms.comparisons(["radimagenet", "imagenet", "dinov2:x", None]) == [
        ("radimagenet", "imagenet", "source"),
        ("radimagenet", "dinov2:x", "encoder"),
        ("imagenet", "dinov2:x", "encoder"),
    ]
    assert protocol.with_preprocessings(["imagenet", "dinov2:x"], ["faithful"]) == ["imagenet@faithful", "dinov2:x"]
    for bad, message in [
        ("dinov3:x", 'not a foundation encoder .*Did you mean "dinov2"'),
        ("resnet50:x", "not a foundation encoder"),
        ("dinov2:/models/x", "is not a name"),
        ("dinov2:", "is not a name"),
        ("dinov2:x@faithful", "drop '@faithful'"),
    ]:
        with pytest.raises(ValueError, match=message) as error:
            protocol.GridOptions(sources=("radimagenet", bad))
        assert "\n" not in str(error.value)


def test_a_missing_preset_folder_is_refused_before_anything_runs(tmp_path):
    from radtransfer.errors import WeightsNotFoundError

    images = rt.datasets.load_synthetic_brain_mri(tmp_path / "d", n_patients=4, slices_per_patient=1, image_size=32)
    with pytest.raises(WeightsNotFoundError, match="No DINOv2 preset folder 'absent'"):
        protocol.run_grid(
            images,
            tmp_path / "grid",
            sources=("dinov2:absent",),
            scenarios=[protocol.Scenario("test_tiny", "freeze_all", 1e-3)],
            weights_dir=tmp_path / "weights",
            verbose=0,
        )
    assert not list((tmp_path / "grid").rglob("record.json"))


@pytest.fixture(scope="module")
def grid(tmp_path_factory, keras2_files):
    """3 sources × 2 strategies × 3 folds, 1 epoch at 32 px (two classes of 30 synthetic patients)."""
    keras_hub = pytest.importorskip("keras_hub", reason="the 'foundation' extra (keras-hub) is not installed")
    from conftest import two_class

    root = tmp_path_factory.mktemp("foundation_grid")
    images = two_class(
        rt.datasets.load_synthetic_brain_mri(root / "data", n_patients=30, slices_per_patient=2, image_size=40, seed=5)
    )
    weights = root / "weights"
    keras2_files.place("test_tiny", weights, "RadImageNet-TestTiny_notop.h5")
    keras2_files.place("test_tiny", weights, get_preset("test_tiny", "imagenet").files[0], kind="weights")
    encoder = keras_hub.models.DINOV2Backbone(
        patch_size=16,
        num_layers=1,
        hidden_dim=32,
        num_heads=2,
        intermediate_dim=64,
        image_shape=(32, 32, 3),
        position_embedding_shape=(32, 32),
    )
    encoder.save_to_preset(str(weights / "tiny_dinov2"))
    config = protocol.RADIMAGENET.replace(
        image_size=32, batch_size=32, augment=None, epochs=1, run_eagerly=True, bootstrap=50
    )
    scenarios = [protocol.Scenario("test_tiny", strategy, 1e-3) for strategy in STRATEGIES]
    out = root / "grid"
    records = protocol.run_grid(
        images,
        out,
        config=config,
        scenarios=scenarios,
        sources=SOURCES,
        folds=FOLDS,
        weights_dir=weights,
        paper_task=None,
        verbose=0,
    )
    return out, records, scenarios, weights


def test_every_run_is_recorded_and_the_encoder_runs_name_their_encoder_and_preset(grid):
    out, records, scenarios, weights = grid
    assert len(records) == len(SOURCES) * len(STRATEGIES) * FOLDS
    assert set(records["status"]) == {"finished"} and np.isfinite(records["auc"].astype(float)).all()
    weights_file = weights / "tiny_dinov2" / "model.weights.h5"
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    for scenario in scenarios:
        for fold in range(FOLDS):
            runs = {s: RunRecord.read(run_dir(out, s, scenario.id, fold) / "record.json") for s in SOURCES}
            assert runs[ENCODER].encoder == "dinov2" and runs[ENCODER].backbone == "test_tiny"
            assert runs[ENCODER].weights_path == str((weights / "tiny_dinov2").resolve())
            assert runs[ENCODER].weights_sha256 == digest
            assert runs[ENCODER].preprocessing == "torch"  # DINOv2's own normalization
            assert runs["radimagenet"].encoder is None
            raw = json.loads((run_dir(out, "radimagenet", scenario.id, fold) / "record.json").read_text())
            assert "encoder" not in raw  # a CNN run's record is as before
            # Paired: one seed and the same test patients (in the same order) for every source of the cell.
            assert len({r.run_seed for r in runs.values()}) == 1
            tests = [np.load(run_dir(out, s, scenario.id, fold) / "predictions.npz") for s in SOURCES]
            for other in tests[1:]:
                np.testing.assert_array_equal(other["patient_ids"], tests[0]["patient_ids"])
                np.testing.assert_array_equal(other["y_true"], tests[0]["y_true"])


def _paired_table(out):
    """Every comparison of the grid (arms.comparisons), per strategy: report.effects' scenario rows."""
    import pandas as pd

    tables = []
    for candidate, reference, factor in arms.comparisons(SOURCES):
        table = report.effects(out, candidate, reference, n=200)
        tables.append(table.assign(candidate=candidate, reference=reference, factor=factor))
    return pd.concat(tables, ignore_index=True)


def test_the_report_pairs_each_source_with_the_encoder_per_strategy(grid):
    from sklearn.metrics import roc_auc_score

    out, _, scenarios, _ = grid
    summary = report.summarize(out, n_boot=200)
    assert set(summary["source"]) == set(SOURCES)
    table = _paired_table(out)
    cells = table[table["scenario"] != "overall"]
    expected = {(c, r, s) for c, r, _ in arms.comparisons(SOURCES) for s in STRATEGIES}
    assert set(zip(cells["candidate"], cells["reference"], cells["strategy"])) == expected
    assert len(cells) == len(expected) and (cells["n_pairs"] == FOLDS).all() and (cells["n_folds"] == FOLDS).all()
    assert np.isfinite(cells[["diff", "low", "high"]].astype(float)).all().all()
    # The effect is the mean over folds of the AUC difference on the same test images (scikit-learn's AUCs).
    for row in cells.itertuples():
        scenario = next(s for s in scenarios if s.strategy == row.strategy)
        diffs = []
        for fold in range(FOLDS):
            a, b = (
                np.load(run_dir(out, s, scenario.id, fold) / "predictions.npz") for s in (row.candidate, row.reference)
            )
            diffs.append(
                roc_auc_score(a["y_true"], a["probabilities"][:, 1])
                - roc_auc_score(b["y_true"], b["probabilities"][:, 1])
            )
        assert row.diff == pytest.approx(np.mean(diffs), abs=1e-9)
    compared = report.comparisons(out, n_boot=200)
    assert list(zip(compared["candidate"], compared["reference"], compared["factor"])) == arms.comparisons(SOURCES)
    assert np.isfinite(compared["paired_diff"].astype(float)).all()
    shown = cells[["candidate", "reference", "strategy", "n_pairs", "diff", "low", "high", "wins", "losses"]]
    print("\n" + shown.to_string(index=False))
    assert len(load_records(out)) == len(SOURCES) * len(STRATEGIES) * FOLDS
