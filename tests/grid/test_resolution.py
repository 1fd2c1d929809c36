"""Resolution as a factor of the grid: every scenario at several image sizes, paired within a source (same split, same
seed), and the resolution effect with the fold-level t interval."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from radtransfer import protocol, report
from radtransfer.cli import main
from radtransfer.grid.records import RunRecord, load_records
from radtransfer.utils.seeding import derive_seed

SIZES = (32, 40)
SCENARIO = protocol.Scenario("test_tiny", "unfreeze_all", 1e-3)  # --backbones test_tiny --max-scenarios 1
PLAIN = "test_tiny__unfreeze_all__lr0.001"


def test_a_scenario_without_a_size_keeps_its_id_dict_seed_and_record():
    old = protocol.Scenario("resnet50", "freeze_all", 1e-3)
    assert old.id == "resnet50__freeze_all__lr0.001"  # the folder name of every grid written before sizes
    assert old.to_dict() == {"backbone": "resnet50", "strategy": "freeze_all", "learning_rate": 1e-3}
    sized = protocol.Scenario("resnet50", "freeze_all", 1e-3, image_size=128)
    assert sized.id == "resnet50__freeze_all__lr0.001__px128" and sized.to_dict()["image_size"] == 128
    assert protocol.run_seed(726, old, 2) == derive_seed(726, "run", "resnet50__freeze_all__lr0.001", 2)
    assert protocol.run_seed(726, sized, 2, 1) == protocol.run_seed(726, old, 2, 1)  # the size leaves the seed
    record = {
        "task": "t",
        "source": "imagenet",
        "backbone": "resnet50",
        "strategy": "freeze_all",
        "learning_rate": 1e-3,
    }
    assert "image_size" not in RunRecord.from_dict({**record, "fold": 0}).to_dict()  # records stay as they were
    assert [s.id for s in protocol.with_image_sizes([old], (128, 256))] == [sized.id, f"{old.id}__px256"]
    for bad in (0, 1.5, "128", True):
        with pytest.raises(ValueError, match="image_size"):
            protocol.with_image_sizes([old], [bad])
    with pytest.raises(ValueError, match="each once"):
        protocol.GridOptions(image_sizes=(128, 128))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A grid of 3 folds × sizes 32 and 40 × one scenario, random initialisation, 1 epoch (4 classes: a macro AUC
    fine enough to differ between the sizes)."""
    import radtransfer as rt

    images = rt.datasets.load_synthetic_brain_mri(
        tmp_path_factory.mktemp("data"), n_patients=18, slices_per_patient=2, image_size=40, seed=7
    )
    config = protocol.RADIMAGENET.replace(image_size=32, batch_size=8, epochs=1, bootstrap=200, run_eagerly=True)
    out = tmp_path_factory.mktemp("resolution") / "grid"
    options = protocol.GridOptions(sources=(None,), folds=3, image_sizes=SIZES, paper_task=None, verbose=0)
    protocol.run_grid(images, out, options, config=config, scenarios=[SCENARIO])
    return out


def test_the_command_crosses_the_scenarios_with_the_sizes(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(protocol, "run_grid", lambda images, out, options, **kw: seen.append((options, kw)) or [])
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "data" / name / "0.png")
    argv = ["grid", str(tmp_path / "data"), "--out", str(tmp_path / "g"), "--backbones", "test_tiny"]
    assert main([*argv, "--max-scenarios", "1", "--image-sizes", "32", "40"]) == 0
    options, keywords = seen[-1]
    assert options == protocol.GridOptions(image_sizes=SIZES, verbose=1) and keywords["scenarios"] == [SCENARIO]
    assert main([*argv, "--image-sizes", "32", "32"]) == 2  # refused in one line, before anything runs


def _run(grid, size, fold) -> RunRecord:
    scenario = PLAIN if size == 32 else f"{PLAIN}__px{size}"  # the grid's own size keeps the plain folder
    return RunRecord.read(grid / "runs" / "random" / scenario / f"fold{fold}" / "record.json")


def test_each_size_has_its_folders_input_size_split_and_seed(grid):
    folders = sorted(p.name for p in (grid / "runs" / "random").iterdir())
    assert folders == [PLAIN, f"{PLAIN}__px40"]
    for fold in range(3):
        small, large = _run(grid, 32, fold), _run(grid, 40, fold)
        assert (small.image_size, small.config["image_size"]) == (None, 32)
        assert (large.image_size, large.config["image_size"]) == (40, 40)
        assert "image_size" not in json.loads((grid / "runs/random" / PLAIN / f"fold{fold}/record.json").read_text())
        assert small.run_seed == large.run_seed == protocol.run_seed(726, SCENARIO, fold)
        assert (small.n_train, small.n_val, small.n_test) == (large.n_train, large.n_val, large.n_test)
        with np.load(_folder(grid, 32, fold) / "predictions.npz") as a:
            with np.load(_folder(grid, 40, fold) / "predictions.npz") as b:
                assert list(a["patient_ids"]) == list(b["patient_ids"]) and list(a["y_true"]) == list(b["y_true"])
        for size in SIZES:  # the model that ran took images of its size
            config = json.loads((_folder(grid, size, fold) / "config.json").read_text())
            assert config["identity"]["data"]["train"]["image_size"] == [size, size]


def _folder(grid, size, fold):
    scenario = PLAIN if size == 32 else f"{PLAIN}__px{size}"
    return grid / "runs" / "random" / scenario / f"fold{fold}"


def test_the_resolution_effect_is_the_mean_paired_difference_with_the_t_interval_over_folds(grid, tmp_path):
    diffs = np.array([_run(grid, 40, f).metrics["auc"] - _run(grid, 32, f).metrics["auc"] for f in range(3)])
    assert diffs.std() > 0  # the sizes differ: a finite interval to check
    table = report.resolution_effects(grid)
    overall = table[table["scenario"] == "overall"].iloc[0]
    assert (overall["source"], overall["size_reference"], overall["size_candidate"]) == ("random", 32, 40)
    assert overall["n_pairs"] == 3 and overall["n_folds"] == 3
    assert overall["diff"] == pytest.approx(diffs.mean(), abs=1e-9)
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)
    assert (overall["low"], overall["high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half), abs=1e-9)
    scenario = table[table["scenario"] == PLAIN].iloc[0]
    assert scenario["diff"] == pytest.approx(diffs.mean(), abs=1e-9)

    written = report.write(grid, formats=("md", "csv"))
    assert "resolution.md" in written and "| size_reference |" in (grid / "report" / "resolution.md").read_text()

    two = tmp_path / "two_folds"  # the same grid without its third fold: no interval
    shutil.copytree(grid, two, ignore=shutil.ignore_patterns("fold2"))
    overall = report.resolution_effects(two).set_index("scenario").loc["overall"]
    assert overall["n_folds"] == 2 and np.isnan(overall["low"]) and np.isnan(overall["high"])
    assert overall["no_interval"] == "no interval (2 folds: fewer than 3)"


def test_a_grid_at_one_size_has_no_resolution_table(grid, tmp_path):
    one = tmp_path / "one_size"
    shutil.copytree(grid, one, ignore=shutil.ignore_patterns(f"{PLAIN}__px40", "report"))
    assert len(load_records(one)) == 3 and report.resolution_effects(one).empty
    assert "resolution" not in report.tables(one)
