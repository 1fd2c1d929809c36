"""Every example script in --quick mode (tiny data, one epoch), on the test backbone: the scripts name real
backbones, which build as test_tiny here (the ``tiny_for`` fixture); the real networks have their own tests in
tests/models."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _main(name):
    return runpy.run_path(str(EXAMPLES / name), run_name="example")["main"]


@pytest.fixture
def weights_dir(tmp_path, keras2_files, monkeypatch, tiny_for):
    from radtransfer.models.presets import get_preset

    tiny_for("resnet50", "densenet121")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("RADTRANSFER_WEIGHTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "weights_in"
    keras2_files.place("test_tiny", folder, "RadImageNet-TestTiny_notop.h5")
    keras2_files.place("test_tiny", folder, get_preset("test_tiny", "imagenet").files[0], kind="weights")
    return folder


def test_brain_mri_densenet121_quick(tmp_path, weights_dir, capsys):
    assert _main("brain_mri_densenet121.py")(["--quick", "--out", str(tmp_path / "brain")]) == 0
    out = capsys.readouterr().out
    assert "confusion matrix" in out and "sensitivity" in out and "FROM RANDOM INITIALISATION" in out
    assert (tmp_path / "brain" / "test_metrics.json").exists()
    import pandas as pd

    history = pd.read_csv(tmp_path / "brain" / "run" / "history.csv")  # epochs count from 1 there
    best = int(history.loc[history["val_loss"].idxmin(), "epoch"])
    assert f"best epoch {best} of {len(history)}" in out  # before: "best epoch 2 of 1"


def test_full_training_vs_fine_tuning_quick(tmp_path, weights_dir, capsys):
    out = tmp_path / "curve"
    assert (
        _main("full_training_vs_fine_tuning.py")(["--quick", "--out", str(out), "--weights-dir", str(weights_dir)]) == 0
    )
    import pandas as pd

    assert "--quick: --backbone resnet50, --epochs 1, --image-size 32, --batch-size 8" in capsys.readouterr().out
    table = pd.read_csv(out / "learning_curve.csv")
    assert list(table["source"]) == ["radimagenet", "radimagenet", "random", "random"]
    assert list(table["fraction"]) == [0.5, 1.0, 0.5, 1.0]
    assert table["n_train_patients"].iloc[0] < table["n_train_patients"].iloc[1]  # nested shares of patients
    assert (out / "learning_curve.png").stat().st_size > 5000


def test_full_training_vs_fine_tuning_layerwise_quick(tmp_path, weights_dir, capsys):
    out = tmp_path / "layerwise"
    argv = ["--quick", "--layerwise", "--out", str(out), "--weights-dir", str(weights_dir), "--backbone=densenet121"]
    assert _main("full_training_vs_fine_tuning.py")(argv) == 0
    import pandas as pd

    printed = capsys.readouterr().out  # --quick kept the backbone given (it swapped in resnet50, silently) and said so
    said = "--quick: --epochs 1, --image-size 32, --batch-size 8, --fractions 0.5 1.0"
    assert f"{said} (given, kept: --backbone densenet121)" in printed

    assert list(pd.read_csv(out / "layerwise.csv")["depth"]) == [0, 1]
    assert (out / "layerwise.png").exists()


def test_radimagenet_grid_quick(tmp_path, weights_dir, capsys):
    out = tmp_path / "grid"
    assert _main("radimagenet_grid.py")(["--quick", "--out", str(out), "--weights-dir", str(weights_dir)]) == 0
    assert len(list(out.rglob("record.json"))) == 4  # 2 sources × 1 scenario × 2 folds
    assert len(list((out / "pairs").rglob("radimagenet__vs__imagenet.json"))) == 2  # one paired test per fold
    assert (out / "report" / "summary.md").exists() and (out / "report" / "heatmap.png").exists()
    assert "| task |" in capsys.readouterr().out
