"""The RadImageNet grid: scenarios, shards, a killed-and-restarted tiny grid, the report and plots."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import radtransfer as rt
from radtransfer import protocol, report


def test_the_24_scenarios():
    scenarios = protocol.radimagenet_scenarios()
    assert len(scenarios) == 24 and len({s.id for s in scenarios}) == 24
    expected = {("unfreeze_all", 1e-3), ("unfreeze_all", 1e-4), ("freeze_all", 1e-2), ("freeze_all", 1e-3),
                ("unfreeze_top10", 1e-2), ("unfreeze_top10", 1e-3)}
    for backbone in ("resnet50", "densenet121", "inception_v3", "inception_resnet_v2"):
        assert {(s.strategy, s.learning_rate) for s in scenarios if s.backbone == backbone} == expected


def test_reference_config_and_copies():
    config = protocol.RADIMAGENET
    assert (config.image_size, config.batch_size, config.epochs, config.optimizer, config.seed) == (256, 256, 30, "adam", 726)
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
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [r.id for r in protocol.plan_runs(("radimagenet", "imagenet"), scenarios, 5, "3/7")] == [r.id for r in shards[2]]
    with pytest.raises(ValueError, match="k/n"):
        protocol.plan_runs(("radimagenet",), scenarios, 1, "8/7")


GRID_SCRIPT = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import radtransfer as rt
from radtransfer import protocol
image_set = rt.datasets.load_synthetic_brain_mri(sys.argv[1])
scenarios = [protocol.Scenario("resnet50", "freeze_all", 1e-3), protocol.Scenario("resnet50", "unfreeze_top10", 1e-3)]
config = protocol.RADIMAGENET.replace(image_size=32, batch_size=8, epochs=1, run_eagerly=True, bootstrap=100)
protocol.run_grid(image_set, sys.argv[2], config=config, sources=("radimagenet",), folds=2, scenarios=scenarios,
                  weights_dir=sys.argv[3], task="brain_mri", verbose=1)
"""


def test_tiny_grid_killed_and_restarted_records_every_run_once(tmp_path, keras2_files):
    data_dir, grid_dir, weights_dir = tmp_path / "data", tmp_path / "grid", tmp_path / "weights"
    rt.datasets.synthetic_brain_mri(data_dir, n_patients=12, slices_per_patient=2, image_size=40, seed=4)
    keras2_files.place("resnet50", weights_dir, "RadImageNet-ResNet50_notop.h5")
    script = tmp_path / "grid.py"
    script.write_text(GRID_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), str(data_dir), str(grid_dir), str(weights_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and not list(grid_dir.rglob("record.json")):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    recorded_before = len(list(grid_dir.rglob("record.json")))
    assert 1 <= recorded_before < 4

    sys.argv = ["grid", str(data_dir), str(grid_dir), str(weights_dir)]
    exec(compile(GRID_SCRIPT, "grid", "exec"), {})
    records = report.load_records(grid_dir)
    assert len(records) == 4
    assert records.groupby(["scenario", "fold"]).size().eq(1).all()
    for path in records["path"]:
        history = pd.read_csv(Path(path) / "history.csv")
        assert history["epoch"].tolist() == [0]
        assert (Path(path) / "predictions.npz").exists()
    record = json.loads((Path(records["path"][0]) / "record.json").read_text())
    assert record["bn"] == "frozen" and record["preprocessing"] == "radimagenet"
    assert record["weights_sha256"] and 0 <= record["metrics"]["auc"] <= 1
    grid = json.loads((grid_dir / "grid.json").read_text())
    assert grid["interpolation"] == "bilinear" and grid["folds"] == 2


# -- the report on a hand-made results folder --------------------------------------------------


def _write_record(root, task, source, scenario, fold, auc, predictions=None):
    folder = root / task / "runs" / source / scenario.id / f"fold{fold}"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"task": task, "source": source, **scenario.to_dict(), "scenario": scenario.id, "fold": fold,
              "metrics": {"auc": auc, "auc_ci": [auc - 0.05, auc + 0.05], "accuracy": 0.7, "balanced_accuracy": 0.7}}
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
    for source, shift in (("radimagenet", 0.04), ("imagenet", 0.0)):
        for scenario in scenarios:
            for fold in range(2):
                auc = float(np.clip(0.8 + shift + rng.normal(0, 0.03), 0, 1))
                truth[(source, scenario.id, fold)] = auc
                y = rng.integers(0, 2, 40)
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
    per_scenario = {source: np.array([np.mean([truth[(source, s.id, f)] for f in range(2)])
                                      for s in protocol.radimagenet_scenarios()]) for source in ("radimagenet", "imagenet")}
    for source in ("radimagenet", "imagenet"):
        assert acl.loc[source, "mean_auc"] == pytest.approx(per_scenario[source].mean())
        assert acl.loc[source, "sd_auc"] == pytest.approx(per_scenario[source].std(ddof=1))
        assert acl.loc[source, "n_runs"] == 48 and acl.loc[source, "n_scenarios"] == 24 and acl.loc[source, "complete"]
    candidate = acl.loc["radimagenet"]
    assert candidate["diff_vs_imagenet"] == pytest.approx((per_scenario["radimagenet"] - per_scenario["imagenet"]).mean())
    assert candidate["wilcoxon_p"] == pytest.approx(stats.wilcoxon(per_scenario["radimagenet"], per_scenario["imagenet"]).pvalue)
    assert candidate["ttest_p"] == pytest.approx(stats.ttest_rel(per_scenario["radimagenet"], per_scenario["imagenet"]).pvalue)
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
    assert set(written) == {f"{t}.{f}" for t in ("summary", "by_backbone", "by_strategy") for f in ("md", "csv", "tex")}
    markdown = Path(written["summary.md"]).read_text()
    assert "acl_mri" in markdown and "| task |" in markdown
    assert r"\begin{tabular}" in Path(written["summary.tex"]).read_text()


def test_plots_are_written(results, tmp_path):
    from radtransfer import plots

    root, _ = results
    written = plots.grid_figures(root / "acl_mri", tmp_path / "figures")
    assert {Path(p).name for p in written} == {f"{n}.{s}" for n in ("roc_curves", "auc_by_scenario", "heatmap")
                                               for s in ("png", "pdf")}
    assert all(Path(p).stat().st_size > 5000 for p in written)


def test_paper_task_names():
    assert report.paper_task("ACL-MRI") == "acl" and report.paper_task("covid19_xray") == "covid19"
    assert report.paper_task("intracranial-hemorrhage") == "haemorrhage" and report.paper_task("brain_mri") is None
