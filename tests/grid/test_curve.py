"""Learning curves: nested shares of the training patients, val and test fixed, random initialisation as a
source, and ``radtransfer curve`` end to end on tiny data."""

from __future__ import annotations

import re

import numpy as np
import pytest

from radtransfer.data.imageset import ImageSet
from radtransfer.grid.arms import RANDOM
from radtransfer.grid.arms import arm_name as source_name
from radtransfer.grid.curve import check_fractions
from radtransfer.grid.paper import RADIMAGENET, Scenario
from radtransfer.grid.plan import plan_runs
from radtransfer.protocol import grid_splits


def _images(n_patients=40, per_patient=3, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.integers(0, n_classes, n_patients), per_patient)
    patients = np.repeat([f"p{i:03d}" for i in range(n_patients)], per_patient)
    paths = [f"/x/{p}_{j}.png" for j, p in enumerate(patients)]
    return ImageSet(paths, labels, [f"c{c}" for c in range(n_classes)], patient_ids=patients)


@pytest.mark.parametrize("folds", [None, 3])
def test_shares_are_nested_and_val_test_fixed(folds):
    images = _images()
    fractions = (0.1, 0.25, 0.5, 1.0)
    parts = {f: grid_splits(images, RADIMAGENET, folds, f) for f in fractions}
    for split in range(len(parts[1.0])):
        patients = [set(parts[f][split][0].patient_ids) for f in fractions]
        for smaller, larger in zip(patients, patients[1:]):
            assert smaller < larger  # each share's patients contain the smaller share's
        whole = parts[1.0][split]
        for f in fractions:
            train, val, test = parts[f][split]
            assert list(val.paths) == list(whole[1].paths) and list(test.paths) == list(whole[2].paths)
            assert not set(train.patient_ids) & (set(val.patient_ids) | set(test.patient_ids))
            # every patient keeps all their images
            kept = set(train.patient_ids)
            assert len(train) == sum(p in kept for p in whole[0].patient_ids)
        n = len(set(whole[0].patient_ids))
        assert len(patients[0]) >= 2 and len(patients[0]) <= int(np.ceil(0.1 * n)) + 2  # ceil per class
        assert set(parts[0.1][split][0].labels) == set(whole[0].labels)  # every class kept


def test_nested_subset_checks_and_is_seeded():
    images = _images()
    assert list(images.nested_subset(0.5, seed=1).paths) == list(images.nested_subset(0.5, seed=1).paths)
    assert list(images.nested_subset(0.5, seed=1).paths) != list(images.nested_subset(0.5, seed=2).paths)
    assert len(images.nested_subset(1.0)) == len(images)
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match="0 < fraction"):
            images.nested_subset(bad)


def test_check_fractions():
    assert check_fractions([0.1, 0.5, 1]) == (0.1, 0.5, 1.0)
    for bad, match in (([0.5, 0.25], "increasing"), ([0, 1], r"\(0, 1\]"), ([1.2], r"\(0, 1\]"), ([], r"\(0, 1\]")):
        with pytest.raises(ValueError, match=match):
            check_fractions(bad)


def test_the_interval_is_a_t_interval_over_folds_or_one_split_s_bootstrap():
    import pandas as pd
    from scipy import stats

    from radtransfer.grid.curve import _interval

    runs = pd.DataFrame(
        {
            "fold": [0, 0, 1, 1, 2, 2],
            "repeat": [0, 1, 0, 1, 0, 1],
            "auc": [0.70, 0.72, 0.80, 0.84, 0.75, np.nan],
            "auc_low": [0.6] * 6,
            "auc_high": [0.9] * 6,
        }
    )
    folds = np.array([0.71, 0.82, 0.75])  # repeats averaged within each fold first
    mean, low, high, how = _interval(runs)
    expected = stats.t.interval(0.95, 2, loc=folds.mean(), scale=stats.sem(folds))
    assert how == "t over folds" and np.allclose([low, high], expected) and np.isclose(mean, folds.mean())
    one_split = pd.DataFrame({"fold": [0, 0], "auc": [0.6, 0.7], "auc_low": [0.5, 0.55], "auc_high": [0.7, 0.8]})
    assert np.allclose(_interval(one_split)[:3], (0.65, 0.525, 0.75))
    assert _interval(one_split)[3] == "bootstrap over test patients"


def test_the_interval_covers_when_repeats_share_their_fold():
    """Simulated curves with a known mean AUC: 5 folds with a fold effect (their test patients and training set) and
    3 repeats each (seed noise). The interval over folds covers 95%; one over the 15 runs, as before, does not."""
    import pandas as pd
    from scipy import stats

    from radtransfer.grid.curve import _interval

    rng = np.random.default_rng(0)
    n, truth, covered, covered_before = 400, 0.8, 0, 0
    fold = np.repeat(np.arange(5), 3)
    for _ in range(n):
        auc = truth + rng.normal(0, 0.03, 5)[fold] + rng.normal(0, 0.01, 15)
        _, low, high, _ = _interval(pd.DataFrame({"fold": fold, "auc": auc, "auc_low": 0.0, "auc_high": 1.0}))
        covered += low <= truth <= high
        before = stats.t.interval(0.95, 14, loc=auc.mean(), scale=stats.sem(auc))
        covered_before += before[0] <= truth <= before[1]
    assert 0.92 <= covered / n <= 0.98, covered / n
    assert covered_before / n < 0.85, covered_before / n


def test_random_source_runs_unfreeze_all_only():
    assert source_name(None) == source_name("none") == source_name("Random") == RANDOM
    scenarios = [Scenario("resnet50", "unfreeze_all", 1e-3), Scenario("resnet50", "freeze_all", 1e-2)]
    runs = plan_runs(["radimagenet", None], scenarios, 1)
    assert [(r.source, r.scenario.strategy) for r in runs] == [
        ("radimagenet", "unfreeze_all"),
        (RANDOM, "unfreeze_all"),
        ("radimagenet", "freeze_all"),
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--fractions", "0.5", "0.25"], "increasing"),
        (["--fractions", "0", "1"], "(0, 1]"),
        (["--sources", "none", "radimagenett"], "sources"),
    ],
)
def test_curve_command_refuses_bad_arguments(cli_data, tmp_path, capsys, argv, message):
    from radtransfer.cli import main

    assert main(["curve", str(cli_data), "--out", str(tmp_path / "curve"), *argv]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "curve").exists()


def test_curve_command_end_to_end(tmp_path, keras2_files, capsys):
    import pandas as pd

    import radtransfer as rt
    from radtransfer.cli import main
    from radtransfer.grid.records import RunRecord

    data = tmp_path / "data"  # 24 patients: about 4 training patients per class, so half is fewer
    rt.datasets.synthetic_brain_mri(data, n_patients=24, slices_per_patient=1, image_size=40, seed=5)
    weights = tmp_path / "weights"
    keras2_files.place("test_tiny", weights, "RadImageNet-TestTiny_notop.h5")
    out = tmp_path / "curve"
    argv = ["curve", str(data), "--out", str(out), "--fractions", "0.5", "1", "--sources", "radimagenet", "none"]
    argv += ["--epochs", "1", "--image-size", "32", "--batch-size", "8", "--run-eagerly", "--no-audit"]
    argv += ["--weights-dir", str(weights), "--backbone", "test_tiny"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    printed = captured.err
    records = sorted(out.rglob("record.json"))
    recomputed = {}
    for path in records:  # each run says, as it ends, its test AUC (recomputed by scikit-learn from its predictions)
        from sklearn.metrics import roc_auc_score

        run_id = RunRecord.read(path).run_id
        saved = np.load(path.parent / "predictions.npz")
        y_true, probabilities = saved["y_true"], saved["probabilities"]
        auc = (
            roc_auc_score(y_true, probabilities, multi_class="ovr", labels=range(4))
            if len(set(y_true)) == 4
            else None  # a class missing from the test images: no AUC
        )
        recomputed[(path.relative_to(out).parts[0], RunRecord.read(path).source)] = auc
        said = f"test AUC {auc:.3f}" if auc is not None else "test AUC not defined"
        assert re.search(rf"finished {re.escape(run_id)} in \d+m\d\ds: {said}; done \d/2", printed), printed
    assert printed.count("test AUC by source (mean, min–max over runs): radimagenet ") == 2, printed  # per share
    assert [p.relative_to(out).parts[:3] for p in records] == [
        (fraction, "runs", source) for fraction in ("fraction0.5", "fraction1") for source in ("radimagenet", "random")
    ]
    half, whole = (RunRecord.read(p) for p in records if "random" in p.parts)
    assert half.source == whole.source == "random" and half.strategy == "unfreeze_all"
    assert half.weights_path is None
    assert half.n_train < whole.n_train and half.n_test == whole.n_test and half.n_val == whole.n_val
    assert len(list(out.rglob("pairs/**/*.json"))) == 2  # radimagenet vs random, per share, same test images
    table = pd.read_csv(out / "learning_curve.csv")
    assert list(table["fraction"]) == [0.5, 1.0, 0.5, 1.0]
    assert list(table["source"]) == ["radimagenet", "radimagenet", "random", "random"]
    assert table["n_train_patients"].iloc[0] < table["n_train_patients"].iloc[1]
    assert (out / "learning_curve.md").exists() and (out / "learning_curve.png").stat().st_size > 5000
    # fine-tuning − training from scratch per share, paired on the same test images (the Tajbakhsh question)
    effects = pd.read_csv(out / "learning_curve_effects.csv")
    assert list(effects["fraction"]) == [0.5, 1.0] and set(effects["source"]) == {"radimagenet"}
    shown = (out / "learning_curve.md").read_text()
    assert "## Fine-tuning against training from scratch" in shown
    assert "fine-tuning − training from scratch, paired test AUC difference:" in captured.out
    for row, folder in zip(effects.itertuples(), ("fraction0.5", "fraction1")):
        expected = recomputed[(folder, "radimagenet")], recomputed[(folder, RANDOM)]
        assert None not in expected, expected  # every class in the test images (seed 5)
        assert row.diff == pytest.approx(expected[0] - expected[1], abs=1e-9)
        if isinstance(row.no_interval, str):  # the minimum-units rule: say why, no interval
            assert np.isnan(row.low) and f"{row.diff:+.3f}, {row.no_interval}" in shown
        else:
            assert row.low <= row.diff <= row.high and f"{row.diff:+.3f} ({row.low:+.3f} to" in shown
    stamps = [p.stat().st_mtime_ns for p in records]
    capsys.readouterr()
    assert main(argv) == 0  # a restart trains nothing
    assert [p.stat().st_mtime_ns for p in records] == stamps
    assert "done 2/2 runs" in capsys.readouterr().err


def test_curve_table_pools_folds_and_repeats_per_source_and_share(tmp_path):
    """Records of a curve with 2 folds × 2 repeats per share, written by hand: each (source, share) row has its
    four runs, their mean AUC and the t interval scipy gives over the two fold means; failed runs are left out."""
    from scipy import stats

    from radtransfer.grid.curve import curve_table, fraction_dir, write_curve
    from radtransfer.grid.records import RunRecord, run_dir

    scenario = Scenario("resnet50", "unfreeze_all", 1e-3)
    rng = np.random.default_rng(0)
    write_curve(
        tmp_path,
        {0.5: {"n_train_images": 10, "n_train_patients": 5}, 1.0: {"n_train_images": 20, "n_train_patients": 10}},
    )
    aucs = {}
    for fraction in (0.5, 1.0):
        for source in ("radimagenet", RANDOM):
            for fold in (0, 1):
                for repeat in (0, 1):
                    auc = float(rng.uniform(0.6, 0.9))
                    aucs.setdefault((source, fraction), []).append(auc)
                    folder = run_dir(fraction_dir(tmp_path, fraction), source, scenario.id, fold, repeat)
                    folder.mkdir(parents=True)
                    RunRecord(
                        run_id=f"{source}/{scenario.id}/{fold}/{repeat}",
                        task="t",
                        source=source,
                        **scenario.to_dict(),
                        scenario=scenario.id,
                        fold=fold,
                        repeat=repeat,
                        metrics={"auc": auc, "auc_ci": [0.5, 0.95]},
                    ).write(folder)
    failed = run_dir(fraction_dir(tmp_path, 1.0), RANDOM, scenario.id, 2, 0)
    failed.mkdir(parents=True)
    RunRecord(
        run_id="x", task="t", source=RANDOM, **scenario.to_dict(), scenario=scenario.id, fold=2, status="failed"
    ).write(failed)
    table = curve_table(tmp_path).set_index(["source", "fraction"])
    for (source, fraction), values in aucs.items():
        row = table.loc[(source, fraction)]
        folds = [np.mean(values[:2]), np.mean(values[2:])]  # each fold's two repeats averaged first
        low, high = stats.t.interval(0.95, 1, loc=np.mean(folds), scale=stats.sem(folds))
        assert row["runs"] == 4 and row["auc"] == pytest.approx(np.mean(values))
        assert (row["auc_low"], row["auc_high"]) == pytest.approx((low, high))
        assert row["n_train_patients"] == (5 if fraction == 0.5 else 10)


def test_curve_table_text_prints_counts_as_counts():
    """`radtransfer curve` printed the table with one float format: 12 training images as 12.000, a share as 0.500."""
    import pandas as pd

    from radtransfer.grid.curve import table_text

    table = pd.DataFrame(
        {
            "source": ["radimagenet", "random"],
            "backbone": ["test_tiny"] * 2,
            "strategy": ["unfreeze_all"] * 2,
            "fraction": [0.5, 1.0],
            "n_train_images": [12.0, 24.5],
            "n_train_patients": [6.0, 12.0],
            "runs": [3, 3],
            "auc": [0.8125, 0.5],
            "auc_low": [0.7, np.nan],
            "auc_high": [0.9, np.nan],
            "interval": ["t over folds", "t over folds"],
        }
    )
    rows = [line.split() for line in table_text(table).splitlines()[1:]]
    assert rows[0][3:10] == ["0.5", "12", "6", "3", "0.812", "0.700", "0.900"]
    assert rows[1][3:10] == ["1", "24.5", "12", "3", "0.500", "–", "–"]


def test_curve_effects_pair_fine_tuning_with_training_from_scratch_per_share(tmp_path):
    """The Tajbakhsh question, per share: radimagenet − random on the same fold and repeat, with scipy's t interval
    over the fold means of the paired differences (3 folds × 2 repeats); with 2 folds, the minimum-units rule
    gives no interval and says why. Shown in learning_curve.md, written as learning_curve_effects.csv and .md."""
    import pandas as pd
    from scipy import stats

    from radtransfer.grid.curve import EFFECTS, curve_effects, curve_table, fraction_dir, write_curve, write_table
    from radtransfer.grid.records import RunRecord, run_dir

    scenario = Scenario("resnet50", "unfreeze_all", 1e-3)
    rng = np.random.default_rng(1)
    sizes = {0.5: {"n_train_images": 10, "n_train_patients": 5}, 1.0: {"n_train_images": 20, "n_train_patients": 10}}
    write_curve(tmp_path, sizes)
    folds_of = {0.5: 2, 1.0: 3}
    diffs = {}
    for fraction, n_folds in folds_of.items():
        for fold in range(n_folds):
            for repeat in (0, 1):
                aucs = {source: float(rng.uniform(0.6, 0.9)) for source in ("radimagenet", RANDOM)}
                diffs.setdefault(fraction, {}).setdefault(fold, []).append(aucs["radimagenet"] - aucs[RANDOM])
                for source, auc in aucs.items():
                    folder = run_dir(fraction_dir(tmp_path, fraction), source, scenario.id, fold, repeat)
                    folder.mkdir(parents=True)
                    RunRecord(
                        run_id=f"{source}/{scenario.id}/{fold}/{repeat}",
                        task="t",
                        source=source,
                        **scenario.to_dict(),
                        scenario=scenario.id,
                        fold=fold,
                        repeat=repeat,
                        metrics={"auc": auc, "auc_ci": [0.5, 0.95]},
                    ).write(folder)
    effects = curve_effects(tmp_path, n=50).set_index("fraction")
    assert list(effects["source"]) == ["radimagenet", "radimagenet"] and set(effects["reference"]) == {RANDOM}
    fold_means = np.array([np.mean(d) for d in diffs[1.0].values()])
    low, high = stats.t.interval(0.95, 2, loc=fold_means.mean(), scale=stats.sem(fold_means))
    whole = effects.loc[1.0]
    assert whole["n_pairs"] == 6 and whole["diff"] == pytest.approx(fold_means.mean())
    assert (whole["low"], whole["high"]) == pytest.approx((low, high))
    half = effects.loc[0.5]
    assert half["diff"] == pytest.approx(np.mean([d for ds in diffs[0.5].values() for d in ds]))
    assert np.isnan(half["low"]) and half["no_interval"] == "no interval (2 folds: fewer than 3)"
    write_table(curve_table(tmp_path), tmp_path, curve_effects(tmp_path, n=50))
    shown = (tmp_path / "learning_curve.md").read_text()
    assert "## Fine-tuning against training from scratch" in shown
    assert f"{whole['diff']:+.3f} ({low:+.3f} to {high:+.3f}), t over folds" in shown
    assert f"{half['diff']:+.3f}, no interval (2 folds: fewer than 3)" in shown
    assert len(pd.read_csv(tmp_path / f"{EFFECTS}.csv")) == 2 and (tmp_path / f"{EFFECTS}.md").exists()


def test_curve_plot_does_not_clip_intervals(tmp_path, monkeypatch):
    """A t interval over 3 folds easily passes 1 or falls below 0.5 while the mean AUC does not; the axis used to be
    0.5–1.01 from the means alone, cutting the bands. Now its limits hold every band drawn."""
    import pandas as pd

    from radtransfer import plots

    table = pd.DataFrame(
        {
            "source": ["radimagenet", "radimagenet", "random", "random"],
            "strategy": ["unfreeze_all"] * 4,
            "n_train_images": [10, 20, 10, 20],
            "auc": [0.80, 0.95, 0.60, 0.70],
            "auc_low": [0.55, 0.82, 0.31, 0.52],
            "auc_high": [1.07, 1.12, 0.88, 0.90],
        }
    )
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or [])
    plots.learning_curve(table, tmp_path / "curve")
    ax = figures[0].axes[0]
    bottom, top = ax.get_ylim()
    drawn = np.concatenate([c.get_paths()[0].vertices[:, 1] for c in ax.collections])
    assert bottom <= drawn.min() and drawn.max() <= top
    assert bottom <= table["auc_low"].min() and table["auc_high"].max() <= top  # the table's own extents
    assert "below chance" in ax.get_title()
