"""The RadImageNet grid: scenarios, shards, a killed-and-restarted tiny grid, the report and plots."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import warm_python

import radtransfer as rt
from radtransfer import protocol, report
from radtransfer.models.presets import get_preset


def test_the_24_scenarios():
    scenarios = protocol.radimagenet_scenarios()
    assert len(scenarios) == 24 and len({s.id for s in scenarios}) == 24
    expected = {
        ("unfreeze_all", 1e-3),
        ("unfreeze_all", 1e-4),
        ("freeze_all", 1e-2),
        ("freeze_all", 1e-3),
        ("unfreeze_top10", 1e-2),
        ("unfreeze_top10", 1e-3),
    }
    for backbone in ("resnet50", "densenet121", "inception_v3", "inception_resnet_v2"):
        assert {(s.strategy, s.learning_rate) for s in scenarios if s.backbone == backbone} == expected


def test_reference_config_and_copies():
    config = protocol.RADIMAGENET
    assert (config.image_size, config.batch_size, config.epochs, config.optimizer, config.seed) == (
        256,
        256,
        30,
        "adam",
        726,
    )
    assert (config.val, config.test, config.augment, config.loss) == (0.10, 0.15, "radimagenet", "auto")
    quick = config.replace(epochs=2, folds=5)
    assert quick.epochs == 2 and quick.folds == 5 and config.epochs == 30
    with pytest.raises(ValueError, match='Did you mean "epochs"'):
        config.replace(epoch=2)
    with pytest.raises(Exception):
        config.epochs = 3  # frozen


def test_shards_partition_the_runs():
    scenarios = protocol.radimagenet_scenarios()
    everything = protocol.plan_runs(("radimagenet", "imagenet"), scenarios, 5)
    assert len(everything) == 240
    shards = [protocol.plan_runs(("radimagenet", "imagenet"), scenarios, 5, f"{k}/7") for k in range(1, 8)]
    ids = [run.id for shard in shards for run in shard]
    assert sorted(ids) == sorted(run.id for run in everything)  # disjoint and complete
    from radtransfer.grid.plan import expected_cost

    work = [sum(expected_cost(run) for run in shard) for shard in shards]  # balanced by expected cost
    assert max(work) - min(work) <= max(expected_cost(run) for run in everything)
    assert [r.id for r in protocol.plan_runs(("radimagenet", "imagenet"), scenarios, 5, "3/7")] == [
        r.id for r in shards[2]
    ]
    with pytest.raises(ValueError, match="k/n"):
        protocol.plan_runs(("radimagenet",), scenarios, 1, "8/7")


GRID_SCRIPT = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import radtransfer as rt
from radtransfer import protocol
data_dir, grid_dir, weights_dir, shard = sys.argv[1:5]
if os.environ.get("PAUSE_AFTER_FIRST_RECORD"):  # the process the test kills: killed after its first record
    import time
    from radtransfer.grid.records import RunRecord
    write = RunRecord.write
    def write_then_wait(self, folder):
        write(self, folder)
        time.sleep(600)
    RunRecord.write = write_then_wait
image_set = rt.datasets.load_synthetic_brain_mri(data_dir)
scenarios = [protocol.Scenario("test_tiny", "freeze_all", 1e-3),
             protocol.Scenario("test_tiny", "unfreeze_all", 1e30)]  # the second one diverges
config = protocol.RADIMAGENET.replace(image_size=32, batch_size=8, epochs=1, run_eagerly=True, bootstrap=50)
protocol.run_grid(image_set, grid_dir, config=config, sources=("radimagenet", "imagenet"), scenarios=scenarios,
                  weights_dir=weights_dir, task="brain_mri", verbose=1, shard=None if shard == "none" else shard)
"""


def _run_script(script, *args):
    sys.argv = ["grid", *map(str, args)]
    exec(compile(script, "grid", "exec"), {})


def _records(grid_dir):
    return {str(p.relative_to(grid_dir)): json.loads(p.read_text()) for p in sorted(grid_dir.rglob("record.json"))}


def _assert_same(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9, nan_ok=True), where
    else:
        assert a == b, where


def test_grid_whole_and_as_killed_restarted_shards_give_identical_records(tmp_path, keras2_files, monkeypatch):
    """Each run is a pure function of (grid seed, scenario, fold, source): the grid run whole, and the same
    grid as two shards (the first killed after its first record and restarted, the second as a SLURM array task with
    shard="auto"), record the same numbers. A diverging
    scenario is recorded and the grid goes on; the two sources of a scenario are paired."""
    data_dir, weights_dir = tmp_path / "data", tmp_path / "weights"
    rt.datasets.synthetic_brain_mri(data_dir, n_patients=12, slices_per_patient=2, image_size=40, seed=4)
    keras2_files.place("test_tiny", weights_dir, "RadImageNet-TestTiny_notop.h5")
    keras2_files.place("test_tiny", weights_dir, get_preset("test_tiny", "imagenet").files[0], kind="weights")
    script = tmp_path / "grid.py"
    script.write_text(GRID_SCRIPT)

    whole = tmp_path / "whole"
    _run_script(GRID_SCRIPT, data_dir, whole, weights_dir, "none")

    sharded = tmp_path / "sharded"
    process = warm_python.Popen(
        [sys.executable, str(script), str(data_dir), str(sharded), str(weights_dir), "1/2"],
        env={**os.environ, "PAUSE_AFTER_FIRST_RECORD": "1"},
    )
    deadline = time.time() + 240
    while time.time() < deadline and not list(sharded.rglob("record.json")):
        assert process.poll() is None, process.stderr.read()[-2000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 1 <= len(list(sharded.rglob("record.json"))) < 2
    _run_script(GRID_SCRIPT, data_dir, sharded, weights_dir, "1/2")
    for name, value in (("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "2")):
        monkeypatch.setenv(name, value)  # the second shard as task 2 of `sbatch --array=1-2`
    _run_script(GRID_SCRIPT, data_dir, sharded, weights_dir, "auto")

    records_whole, records_sharded = _records(whole), _records(sharded)
    assert len(records_whole) == 4 and records_whole.keys() == records_sharded.keys()
    for key in records_whole:
        _assert_same(records_whole[key], records_sharded[key], key)

    runs = {(r["source"], r["learning_rate"]): r for r in records_whole.values()}
    assert runs[("radimagenet", 1e30)]["status"] == "failed" and runs[("radimagenet", 1e30)]["metrics"] is None
    finished = runs[("radimagenet", 1e-3)]
    assert finished["status"] == "finished" and finished["schema_version"] == 4
    assert finished["run_seed"] == runs[("imagenet", 1e-3)]["run_seed"]  # the two sources are paired
    assert finished["metrics"]["auc_ci_unit"] == "patient" and finished["bn"] == "frozen"
    pair = json.loads(next((whole / "pairs").rglob("radimagenet__vs__imagenet.json")).read_text())
    assert pair["method"] == "paired_bootstrap" and pair["unit"] == "patient"  # 2 slices per patient
    table = report.summarize(whole).set_index("source")
    assert table.loc["radimagenet", "n_failed"] == 1 and not table.loc["radimagenet", "complete"]
    assert table.loc["radimagenet", "n_expected"] == 2 and table.loc["radimagenet", "run_pairs"] == 1
    assert json.loads((whole / "grid.json").read_text())["paper_task"] is None


def test_runs_of_two_sources_start_from_the_same_head(keras2_files, tmp_path):
    from radtransfer.models import init_head

    scenario = protocol.Scenario("test_tiny", "freeze_all", 1e-3)
    seed = protocol.run_seed(726, scenario, 0)
    assert seed == protocol.run_seed(726, scenario, 0) != protocol.run_seed(726, scenario, 1)
    heads = []
    for name, kind in (("RadImageNet-TestTiny_notop.h5", "full"), ("imagenet.h5", "weights")):
        path = keras2_files.place("test_tiny", tmp_path, name, kind=kind)
        model = rt.build_model("test_tiny", weights=str(path), num_classes=2, input_shape=(32, 32, 3))
        init_head(model, seed)
        heads.append(model.get_layer("predictions").get_weights())
    for a, b in zip(*heads):
        np.testing.assert_array_equal(a, b)


# -- the report on a hand-made results folder --------------------------------------------------


def _write_record(root, task, source, scenario, fold, auc, predictions=None):
    folder = root / task / "runs" / source / scenario.id / f"fold{fold}"
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "task": task,
        "source": source,
        **scenario.to_dict(),
        "scenario": scenario.id,
        "fold": fold,
        "metrics": {"auc": auc, "auc_ci": [auc - 0.05, auc + 0.05], "accuracy": 0.7, "balanced_accuracy": 0.7},
    }
    (folder / "record.json").write_text(json.dumps(record))
    if predictions is not None:
        np.savez(folder / "predictions.npz", y_true=predictions[0], probabilities=predictions[1])
    return folder


@pytest.fixture
def results(tmp_path):
    """Task acl_mri: a complete 2-fold grid; task toy: an incomplete one."""
    rng = np.random.default_rng(0)
    scenarios = protocol.radimagenet_scenarios()
    truth = {}
    labels = {(s.id, f): rng.integers(0, 2, 40) for s in scenarios for f in range(2)}  # one test set per fold
    for source, shift in (("radimagenet", 0.04), ("imagenet", 0.0)):
        for scenario in scenarios:
            for fold in range(2):
                auc = float(np.clip(0.8 + shift + rng.normal(0, 0.03), 0, 1))
                truth[(source, scenario.id, fold)] = auc
                y = labels[(scenario.id, fold)]
                p = np.clip(0.3 * y + rng.uniform(0, 0.7, 40), 0, 1)
                _write_record(tmp_path, "acl_mri", source, scenario, fold, auc, (y, np.stack([1 - p, p], 1)))
    (tmp_path / "acl_mri" / "grid.json").write_text(json.dumps({"task": "acl_mri", "folds": 2}))
    for scenario in scenarios[:3]:
        _write_record(tmp_path, "toy", "radimagenet", scenario, 0, 0.7)
        _write_record(tmp_path, "toy", "imagenet", scenario, 0, 0.65)
    return tmp_path, truth


def test_summarize_means_sds_and_p_values(results):
    from scipy import stats

    root, truth = results
    table = rt.report.summarize(root)
    acl = table[table["task"] == "acl_mri"].set_index("source")
    per_scenario = {
        source: np.array(
            [np.mean([truth[(source, s.id, f)] for f in range(2)]) for s in protocol.radimagenet_scenarios()]
        )
        for source in ("radimagenet", "imagenet")
    }
    for source in ("radimagenet", "imagenet"):
        assert acl.loc[source, "mean_auc"] == pytest.approx(per_scenario[source].mean())
        assert acl.loc[source, "sd_auc"] == pytest.approx(per_scenario[source].std(ddof=1))
        assert acl.loc[source, "n_runs"] == 48 and acl.loc[source, "n_scenarios"] == 24 and acl.loc[source, "complete"]
    candidate = acl.loc["radimagenet"]
    assert candidate["diff_vs_imagenet"] == pytest.approx(
        (per_scenario["radimagenet"] - per_scenario["imagenet"]).mean()
    )
    assert candidate["wilcoxon_p"] == pytest.approx(
        stats.wilcoxon(per_scenario["radimagenet"], per_scenario["imagenet"]).pvalue
    )
    assert candidate["ttest_p"] == pytest.approx(
        stats.ttest_rel(per_scenario["radimagenet"], per_scenario["imagenet"]).pvalue
    )
    assert candidate["n_pairs"] == 24 and candidate["paper_gain"] == pytest.approx(0.048)

    toy = table[table["task"] == "toy"].set_index("source")
    assert toy.loc["radimagenet", "n_scenarios"] == 3 and not toy.loc["radimagenet", "complete"]
    assert np.isnan(toy.loc["radimagenet", "paper_gain"])


def test_breakdowns_and_written_tables(results):
    root, _ = results
    by_backbone = rt.report.breakdown(root, "backbone")
    acl = by_backbone[(by_backbone["task"] == "acl_mri") & (by_backbone["source"] == "imagenet")]
    assert sorted(acl["backbone"]) == sorted(protocol.BACKBONE_ORDER) and (acl["n_scenarios"] == 6).all()
    written = rt.report.write(root, formats=("md", "csv", "tex"), report_dir=root / "out")
    tables = ("summary", "by_backbone", "by_strategy", "pairs", "effects", "comparisons", "runs")
    assert set(written) == {f"{t}.{f}" for t in tables for f in ("md", "csv", "tex")}
    pairs = pd.read_csv(written["pairs.csv"])
    assert len(pairs) == 48 and set(pairs["method"]) == {"delong"}  # one per scenario and fold
    markdown = Path(written["summary.md"]).read_text()
    assert "acl_mri" in markdown and "| task |" in markdown
    assert r"\begin{tabular}" in Path(written["summary.tex"]).read_text()


def test_plots_are_written(results, tmp_path):
    from radtransfer import plots

    root, _ = results
    written = plots.grid_figures(root / "acl_mri", tmp_path / "figures")
    assert {Path(p).name for p in written} == {
        f"{n}.{s}" for n in ("roc_curves", "auc_by_scenario", "heatmap", "reliability") for s in ("png", "pdf")
    }
    assert all(Path(p).stat().st_size > 5000 for p in written)


def test_paper_task_names_match_whole_words_only():
    assert report.paper_task("ACL-MRI") == "acl" and report.paper_task("covid19_xray") == "covid19"
    assert report.paper_task("intracranial-hemorrhage") == "haemorrhage" and report.paper_task("brain_mri") is None
    assert report.paper_task("sars_cov_2_ct") == "sars_cov_2" and report.paper_task("RSNA ICH") == "haemorrhage"
    assert report.paper_task("lung_nodule_zurich") is None  # "ich" inside "zurich" is not the haemorrhage task
    assert report.paper_task("breast_and_thyroid") is None  # two tasks: no guess


def _grid(root, task, scenarios, folds=None, paper_task=None):
    from radtransfer.grid.records import GridSpec

    (root / task).mkdir(parents=True, exist_ok=True)
    GridSpec(
        task=task,
        config={},
        sources=["radimagenet", "imagenet"],
        scenarios=[s.to_dict() for s in scenarios],
        folds=folds,
        faithful=False,
        bn="frozen",
        interpolation="bilinear",
        n_images=10,
        class_names=["a", "b"],
        paper_task=paper_task,
    ).write(root / task)


def _record(root, task, source, scenario, fold, auc, status="finished", missing=()):
    from radtransfer.grid.records import RunRecord

    folder = root / task / "runs" / source / scenario.id / f"fold{fold}"
    folder.mkdir(parents=True, exist_ok=True)
    metrics = (
        None
        if status == "failed"
        else {"auc": auc, "auc_ci": [auc - 0.05, auc + 0.05], "accuracy": 0.7, "missing_classes": list(missing)}
    )
    RunRecord(
        run_id=f"{source}/{scenario.id}/fold{fold}",
        task=task,
        source=source,
        **scenario.to_dict(),
        scenario=scenario.id,
        fold=fold,
        status=status,
        metrics=metrics,
        missing_classes=list(missing),
        diverged_epoch=3 if status != "finished" else None,
    ).write(folder)


def test_completeness_is_judged_against_the_grids_own_scenarios_and_valid_folds(tmp_path):
    scenarios = protocol.radimagenet_scenarios()[:3]
    _grid(tmp_path, "small", scenarios, folds=2, paper_task="thyroid")
    for source in ("radimagenet", "imagenet"):
        for scenario in scenarios:
            for fold in range(2):
                _record(tmp_path, "small", source, scenario, fold, 0.8 if source == "imagenet" else 0.85)
    table = report.summarize(tmp_path).set_index("source")
    assert table.loc["radimagenet", "complete"] and table.loc["radimagenet", "n_expected"] == 6
    assert table.loc["radimagenet", "paper_gain"] == pytest.approx(0.094)  # from grid.json, not the name

    # One fold whose test part lacks a class (NaN AUC), one diverged run with a checkpoint, one failed run.
    _record(tmp_path, "small", "radimagenet", scenarios[0], 1, float("nan"), missing=("b",))
    _record(tmp_path, "small", "radimagenet", scenarios[1], 1, 0.6, status="diverged")
    _record(tmp_path, "small", "radimagenet", scenarios[2], 1, float("nan"), status="failed")
    table = report.summarize(tmp_path).set_index("source")
    row = table.loc["radimagenet"]
    assert not row["complete"] and row["n_missing_class"] == 1 and row["n_diverged"] == 1 and row["n_failed"] == 1
    assert row["min_folds"] == 1  # the folds without an AUC are not counted as folds
    means = report.scenario_means(report.load_records(tmp_path))
    mine = means[means["source"] == "radimagenet"].set_index("scenario")
    assert mine.loc[scenarios[0].id, "n_folds"] == 1 and mine.loc[scenarios[0].id, "auc"] == pytest.approx(0.85)
    assert mine.loc[scenarios[1].id, "auc"] == pytest.approx((0.85 + 0.6) / 2)  # a diverged run's checkpoint counts


def test_latex_tables_escape_special_characters(tmp_path):
    scenario = protocol.radimagenet_scenarios()[0]
    _grid(tmp_path, "R&D #1 50%", [scenario])
    for source in ("radimagenet", "imagenet"):
        _record(tmp_path, "R&D #1 50%", source, scenario, 0, 0.8)
    written = report.write(tmp_path, formats=("tex",), report_dir=tmp_path / "out")
    tex = Path(written["summary.tex"]).read_text()
    assert r"R\&D \#1 50\%" in tex and "R&D" not in tex
    assert r"diff\_vs\_imagenet" in tex


# -- a grid on the user's path: two classes, a run that diverges at once, restarts, changed data -------


def test_a_two_class_grid_records_a_run_diverging_in_its_first_epoch_and_binds_its_folder_to_the_data(
    tmp_path, keras2_files, monkeypatch, capsys
):
    """Before: the diverging run crashed the grid with scikit-learn's "Input contains NaN" on every restart; each
    run's config.json said batch_size 32 and augment "radimagenet" whatever ran; and a restart on relabelled data
    kept the old records."""
    from radtransfer import data

    from conftest import two_class

    images = two_class(
        rt.datasets.load_synthetic_brain_mri(
            tmp_path / "data", n_patients=16, slices_per_patient=2, image_size=40, seed=4
        )
    )
    weights = tmp_path / "weights"
    keras2_files.place("test_tiny", weights, "RadImageNet-TestTiny_notop.h5")
    scenarios = [
        protocol.Scenario("test_tiny", "freeze_all", 1e-3),
        protocol.Scenario("test_tiny", "unfreeze_all", 1e30),
    ]
    config = protocol.RADIMAGENET.replace(
        image_size=32, batch_size=8, augment=None, epochs=1, run_eagerly=True, bootstrap=50
    )
    from radtransfer.grid import runs

    built = []
    monkeypatch.setattr(runs, "make_dataset", lambda *a, **k: built.append(k) or data.make_dataset(*a, **k))
    grid = tmp_path / "grid"

    def run(image_set):
        return protocol.run_grid(
            image_set,
            grid,
            config=config,
            sources=("radimagenet",),
            scenarios=scenarios,
            weights_dir=weights,
            verbose=0,
        )

    capsys.readouterr()
    records = run(images).set_index("learning_rate")
    printed = capsys.readouterr()
    assert printed.out == "" and "epoch" not in printed.err and "[grid" not in printed.err, printed  # verbose 0
    assert records.loc[1e30, "status"] == "failed" and records.loc[1e30, "diverged_epoch"] == 1
    assert records.loc[1e-3, "status"] == "finished" and np.isfinite(records.loc[1e-3, "auc"])
    assert {(k["batch_size"], k.get("augment")) for k in built} == {(8, None)}  # the datasets that were built ...
    for path in grid.rglob("config.json"):  # ... are what every run records
        recorded = json.loads(path.read_text())
        assert recorded["batch_size"] == recorded["identity"]["config"]["batch_size"] == 8
        assert recorded["augment"] is None and recorded["identity"]["config"]["augment"] is None
    for path in grid.rglob("record.json"):
        assert json.loads(path.read_text())["train_config"]["batch_size"] == 8
    assert len(run(images)) == 2  # restarted: nothing to do, nothing refused
    assert json.loads((grid / "audit.json").read_text()) == []  # the grid's own parts, audited: clean

    # one slice of every patient copied under a new patient: whichever part it lands in, the others hold sources
    first = np.unique(images.patient_ids, return_index=True)[1]
    copies = []
    for k in first:
        copies.append(tmp_path / f"copy{k}.png")
        copies[-1].write_bytes(Path(images.paths[k]).read_bytes())
    planted = rt.data.ImageSet(
        [*images.paths, *map(str, copies)],
        np.append(images.labels, images.labels[first]),
        images.class_names,
        np.append(images.patient_ids, ["P-copy"] * len(first)),
    )
    with pytest.raises(rt.DataAuditError, match=r"error\(s\) \(\d+ duplicate\).*--strict"):
        protocol.run_grid(
            planted,
            tmp_path / "strict",
            config=config,
            sources=("radimagenet",),
            scenarios=scenarios[:1],
            weights_dir=weights,
            audit="strict",
        )
    assert not list((tmp_path / "strict").rglob("record.json"))

    swapped = images.labels.copy()  # two patients of different classes swap labels
    a, b = (np.flatnonzero(images.patient_ids == images.patient_ids[np.argmax(images.labels == c)]) for c in (0, 1))
    swapped[a], swapped[b] = 1, 0
    relabelled = rt.data.ImageSet(images.paths, swapped, images.class_names, images.patient_ids)
    with pytest.raises(rt.RunMismatchError, match=r"made on other data.*\n  4 image\(s\) with another class: "):
        run(relabelled)
    from PIL import Image

    changed = Path(images.paths[3])
    pixels = np.asarray(Image.open(changed)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(changed)
    with pytest.raises(rt.RunMismatchError, match=rf"1 image\(s\) with another contents: {re.escape(str(changed))}"):
        run(images)


def test_two_grids_whose_folders_share_a_name_are_two_rows(tmp_path):
    """Before: a faithful and a corrected grid under A/task and B/task became one row (its AUC the mean of both,
    n_runs 2 against n_expected 1, marked complete)."""
    scenario = protocol.radimagenet_scenarios()[0]
    for root, auc in ((tmp_path / "A", 0.9), (tmp_path / "B", 0.6)):
        _grid(root, "task", [scenario])
        for source in ("radimagenet", "imagenet"):
            _record(root, "task", source, scenario, 0, auc if source == "radimagenet" else auc - 0.1)
    table = report.summarize(tmp_path).set_index(["grid", "source"])
    assert sorted(table.index) == [
        ("A/task", "imagenet"),
        ("A/task", "radimagenet"),
        ("B/task", "imagenet"),
        ("B/task", "radimagenet"),
    ]
    for grid, auc in (("A/task", 0.9), ("B/task", 0.6)):
        row = table.loc[(grid, "radimagenet")]
        assert row["mean_auc"] == pytest.approx(auc) and row["n_runs"] == row["n_expected"] == 1 and row["complete"]
        assert row["diff_vs_imagenet"] == pytest.approx(0.1)
    assert set(report.breakdown(tmp_path, "backbone")["grid"]) == {"A/task", "B/task"}
    from radtransfer import plots

    written = plots.grid_figures(tmp_path, tmp_path / "figures")
    assert {Path(p).parent.name for p in written} == {"A__task", "B__task"}


def test_figures_and_tables_do_not_overstate(tmp_path):
    """AUC axes run from chance (0.5) to 1 whatever the data's range (an all-1.000 grid once drew a colour bar from
    0.90 to 1.10), and counts print as integers (once 6.000)."""
    from radtransfer import plots

    assert plots.auc_axis([1.0, 1.0, 1.0]) == (0.5, 1.0, "")
    assert plots.auc_axis([0.93, 0.97]) == (0.5, 1.0, "")
    low, high, note = plots.auc_axis([0.42, 0.9])
    assert (low, high) == (0.4, 1.0) and "below chance" in note
    table = pd.DataFrame({"task": ["t"], "n_runs": [6.0], "mean_auc": [1.0], "run_pairs": [np.nan], "fold": [2.0]})
    assert report.to_markdown(table).splitlines()[-1] == "| t | 6 | 1.000 | – | 2 |"


def test_a_grid_run_says_each_epoch_and_its_heartbeat_in_the_grid_log_named_by_its_run(
    tmp_path, keras2_files, monkeypatch, capsys
):
    """Before: at verbose 1 a grid run (46–146 s each on a CPU) printed nothing between its "running" and its
    "finished" line. Now each epoch says its line, and a long epoch its heartbeat, in the grid's log, named by the
    run. (That verbose 0 stays silent is checked by the test above.)"""
    import io

    from radtransfer.grid.records import RunRecord
    from radtransfer.training import epoch_loop

    from conftest import two_class

    images = two_class(
        rt.datasets.load_synthetic_brain_mri(
            tmp_path / "data", n_patients=16, slices_per_patient=2, image_size=40, seed=4
        )
    )
    weights = tmp_path / "weights"
    keras2_files.place("test_tiny", weights, "RadImageNet-TestTiny_notop.h5")
    scenarios = [protocol.Scenario("test_tiny", "freeze_all", 1e-3)]
    config = protocol.RADIMAGENET.replace(image_size=32, batch_size=4, augment=None, epochs=2, run_eagerly=True)
    monkeypatch.setattr(epoch_loop, "RUN_HEARTBEAT_S", 0.0, raising=False)  # a heartbeat at every step

    log = io.StringIO()
    capsys.readouterr()
    protocol.run_grid(
        images,
        tmp_path / "grid",
        config=config,
        sources=("radimagenet",),
        scenarios=scenarios,
        weights_dir=weights,
        audit="off",
        log=log,
    )  # verbose 1, the default
    lines = log.getvalue().splitlines()
    record = next((tmp_path / "grid").rglob("record.json"))
    run_id, history = RunRecord.read(record).run_id, pd.read_csv(record.parent / "history.csv")
    running = lines.index(next(line for line in lines if f"running {run_id}" in line))
    finished = lines.index(next(line for line in lines if f"finished {run_id}" in line))
    between = lines[running + 1 : finished]
    prefix = f"[grid grid] {run_id}: "
    assert between and all(line.startswith(prefix) for line in between), lines
    said = [line[len(prefix) :] for line in between]
    assert said[0] == "epoch 1/2: building the training graph and reading the images"
    epochs = [line for line in said if re.fullmatch(r"epoch \d/2 - \d+s - val_loss \S+ - val_auc \S+", line)]
    assert len(epochs) == 2, said
    for epoch, line in enumerate(epochs):  # the values the run folder's history holds
        assert line.startswith(f"epoch {epoch + 1}/2 - ")
        assert line.endswith(f"val_loss {history['val_loss'][epoch]:.3f} - val_auc {history['val_auc'][epoch]:.3f}")
    beat = r"epoch [12]/2: step \d+/\d+(, \d+\.\d\d steps/s, about \d+m\d\ds left in this epoch| begins; the first .*)"
    beats = [line for line in said if re.fullmatch(beat, line)]
    assert {line[:9] for line in beats} == {"epoch 1/2", "epoch 2/2"}, said
    assert len(said) == 1 + len(epochs) + len(beats), said  # nothing else
    assert capsys.readouterr().out == ""  # fine_tune's own lines (stdout) stay for verbose 2


def test_a_fold_whose_test_part_would_hold_one_class_is_refused_before_any_run():
    """Before: the grid trained the fold's runs and stopped at the first test AUC ("AUC needs at least two
    classes ... only ['intact'] present"), naming neither the fold nor the cure."""
    from radtransfer.data import ImageSet

    patients = [f"P{i}" for i in range(8)]  # 7 patients of one class, 1 of the other: 3 folds cannot all get both
    labels = [0] * 7 + [1]
    image_set = ImageSet(
        paths=[f"/nowhere/{p}.png" for p in patients],
        labels=labels,
        class_names=("intact", "torn"),
        patient_ids=patients,
    )
    with pytest.raises(
        rt.RadtransferError, match=r"^Fold \d's test part holds only class 'intact' .*--folds"
    ) as caught:
        protocol.grid_splits(image_set, protocol.RADIMAGENET, 3)
    assert "\n" not in str(caught.value)
    balanced = [f"B{i}" for i in range(12)]  # 6 patients of each class: every fold's test part gets both
    both = ImageSet(
        paths=[f"/nowhere/{p}.png" for p in balanced],
        labels=[0, 1] * 6,
        class_names=("intact", "torn"),
        patient_ids=balanced,
    )
    assert len(protocol.grid_splits(both, protocol.RADIMAGENET, 3)) == 3
