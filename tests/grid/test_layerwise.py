"""Layer-wise fine-tuning: ``radtransfer layerwise`` end to end on tiny data, and the tie rule of its "best"."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest


def test_tied_depths_give_one_best_the_fewest_trainable_parameters(monkeypatch):
    """Depths whose validation AUCs tie (as they do on small validation sets: 1.0, or 0.5 for a model at chance)
    were all marked best; now exactly one is, the one with the fewest trainable parameters."""
    from radtransfer.grid import layerwise

    aucs = {"freeze_all": 0.75, "unfreeze_blocks:1": 1.0, "unfreeze_blocks:2": 1.0, "unfreeze_all": 1.0}
    params = {"freeze_all": 10, "unfreeze_blocks:1": 200, "unfreeze_blocks:2": 300, "unfreeze_all": 400}

    def fake_fine_tune(model, train, val, config=None, *, strategy, **_):
        return SimpleNamespace(model=strategy, trainable_params=params[strategy], best_val_loss=0.1, epochs_run=1)

    monkeypatch.setattr(layerwise, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(layerwise, "evaluate", lambda model, val, bootstrap=0: {"auc": aucs[model]})
    table = layerwise.layerwise_search(lambda: None, None, None, depths=[0, 1, 2, "all"])
    assert table["best"].sum() == 1 and table.loc[table["best"], "depth"].item() == 1
    aucs.update(dict.fromkeys(aucs, 0.5))
    table = layerwise.layerwise_search(lambda: None, None, None, depths=[0, 1, 2, "all"])
    assert table["best"].sum() == 1 and table.loc[table["best"], "depth"].item() == 0
    aucs.update(dict.fromkeys(aucs, np.nan))
    assert layerwise.layerwise_search(lambda: None, None, None, depths=[0, 1, 2, "all"])["best"].sum() == 0


def test_layerwise_command_end_to_end(tmp_path, keras2_files, capsys, monkeypatch):
    """``radtransfer layerwise`` as typed, from another working folder: a run folder per depth, the table in
    layerwise.csv and .md with one best, a line per depth as it ends and a summary; the validation AUC of each depth
    is scikit-learn's on its saved model's predictions of the validation images."""
    from sklearn.metrics import roc_auc_score

    import radtransfer as rt
    from radtransfer.cli import main

    data = tmp_path / "data"  # two classes: a validation AUC defined on a few patients
    manifest = pd.read_csv(rt.datasets.synthetic_brain_mri(data, n_patients=32, slices_per_patient=1, image_size=40))
    manifest[manifest["label"].isin(["glioma", "no_tumor"])].to_csv(data / "two.csv", index=False)
    weights = tmp_path / "weights"
    keras2_files.place("test_tiny", weights, "RadImageNet-TestTiny_notop.h5")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "search"
    argv = ["layerwise", str(data / "two.csv"), "--out", str(out), "--backbone", "test_tiny", "--depths", "0", "1"]
    argv += ["--weights-dir", str(weights), "--epochs", "1", "--image-size", "32", "--batch-size", "8"]
    argv += ["--run-eagerly", "--no-audit", "--verbose", "0", "--val", "0.4", "--test", "0.2"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    table = pd.read_csv(out / "layerwise.csv")
    assert list(table["depth"]) == [0, 1] and list(table["strategy"]) == ["freeze_all", "unfreeze_blocks:1"]
    assert table["trainable_params"].iloc[0] < table["trainable_params"].iloc[1]
    assert table["best"].sum() == 1
    assert "best: the best validation AUC" in (out / "layerwise.md").read_text()
    for depth in (0, 1):
        assert re.search(rf"layerwise: depth {depth} \(.*validation AUC .* done {depth + 1}/2", captured.err)
        predictions = rt.predict(out / f"depth_{depth}", str(out / "split_val.csv"))
        truth = (pd.read_csv(out / "split_val.csv")["label"] == "no_tumor").astype(int)
        auc = roc_auc_score(truth, predictions["p_no_tumor"])
        assert table["val_auc"].iloc[depth] == pytest.approx(auc, abs=1e-6)
    best = table[table["best"]].iloc[0]
    assert f"best depth {best['depth']} ({best['strategy']}): validation AUC {best['val_auc']:.3f}" in captured.out
    assert {"split_train.csv", "split_val.csv", "split_test.csv", "cli_config.json"} <= {p.name for p in out.iterdir()}
    # Rerun with another seed: refused, and nothing in the folder changed (the command's files are written only
    # once a depth's training is accepted, as train's are).
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert main([*argv, "--seed", "1"]) == 1
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_layerwise_command_refuses_a_bad_depth(cli_data, tmp_path, capsys):
    from radtransfer.cli import main

    argv = ["layerwise", str(cli_data), "--out", str(tmp_path / "s"), "--depths", "0", "two"]
    assert main(argv) == 2
    assert "--depths" in capsys.readouterr().err and not (tmp_path / "s").exists()
