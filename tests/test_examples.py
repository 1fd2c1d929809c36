"""Every example script in --quick mode (tiny data, one epoch)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _main(name):
    return runpy.run_path(str(EXAMPLES / name), run_name="example")["main"]


@pytest.fixture
def weights_dir(tmp_path, keras2_files, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("RADTRANSFER_WEIGHTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "weights_in"
    keras2_files.place("resnet50", folder, "RadImageNet-ResNet50_notop.h5")
    keras2_files.place("resnet50", folder, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", kind="weights")
    return folder


@pytest.mark.slow  # about 20 s; the command's demo test covers the same path; make test-slow runs it
def test_brain_mri_densenet121_quick(tmp_path, weights_dir, capsys):
    assert _main("brain_mri_densenet121.py")(["--quick", "--out", str(tmp_path / "brain")]) == 0
    out = capsys.readouterr().out
    assert "confusion matrix" in out and "sensitivity" in out and "FROM RANDOM INITIALISATION" in out
    assert (tmp_path / "brain" / "test_metrics.json").exists()


@pytest.mark.slow  # about 60 s (four runs of protocol.learning_curve); make test-slow runs it
def test_full_training_vs_fine_tuning_quick(tmp_path, weights_dir, capsys):
    out = tmp_path / "curve"
    assert (
        _main("full_training_vs_fine_tuning.py")(["--quick", "--out", str(out), "--weights-dir", str(weights_dir)]) == 0
    )
    import pandas as pd

    table = pd.read_csv(out / "learning_curve.csv")
    assert list(table["source"]) == ["radimagenet", "radimagenet", "random", "random"]
    assert list(table["fraction"]) == [0.5, 1.0, 0.5, 1.0]
    assert table["n_train_patients"].iloc[0] < table["n_train_patients"].iloc[1]  # nested shares of patients
    assert (out / "learning_curve.png").stat().st_size > 5000


@pytest.mark.slow  # layer-wise search itself is tested in tests/training; make test-slow runs the example
def test_full_training_vs_fine_tuning_layerwise_quick(tmp_path, weights_dir, capsys):
    out = tmp_path / "layerwise"
    argv = ["--quick", "--layerwise", "--out", str(out), "--weights-dir", str(weights_dir)]
    assert _main("full_training_vs_fine_tuning.py")(argv) == 0
    import pandas as pd

    assert list(pd.read_csv(out / "layerwise.csv")["depth"]) == [0, 1]
    assert (out / "layerwise.png").exists()


@pytest.mark.slow  # about 45 s; make test-slow runs it (tests/grid and the command's grid test cover the grid)
def test_radimagenet_grid_quick(tmp_path, weights_dir, capsys):
    out = tmp_path / "grid"
    assert _main("radimagenet_grid.py")(["--quick", "--out", str(out), "--weights-dir", str(weights_dir)]) == 0
    assert len(list(out.rglob("record.json"))) == 4  # 2 sources × 1 scenario × 2 folds
    assert len(list((out / "pairs").rglob("radimagenet__vs__imagenet.json"))) == 2  # one paired test per fold
    assert (out / "report" / "summary.md").exists() and (out / "report" / "heatmap.png").exists()
    assert "| task |" in capsys.readouterr().out
