"""The command paths of API features (issue 31): ``grid --shortcut SHARE`` (``protocol.shortcut_test``),
``train``/``evaluate --label-cols`` (a multi-label CSV manifest), and ``predict --level patient|exam`` (the per-unit
CSV of ``evaluation.unit_rows``), each through ``radtransfer.cli.main`` on tiny data, checked against pandas,
scikit-learn or the saved model, with their one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from radtransfer.cli import main

TINY = ["--config", "{config}", "--batch-size", "4", "--run-eagerly", "--verbose", "0"]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("extras_config") / "defaults.json"
    path.write_text(json.dumps({"backbone": "test_tiny", "weights": "none", "image-size": 32, "epochs": 1}))
    return path


def _tiny(config) -> list:
    return [a.replace("{config}", str(config)) for a in TINY]


def _error_lines(capsys) -> list:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("radtransfer: error")]


# -- predict --level ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exam_manifest(cli_data, tmp_path_factory):
    """cli_data's manifest with absolute paths and an exam column: each patient's slice 0 and 1 in one exam for
    even patients, in two exams for odd ones."""
    frame = pd.read_csv(cli_data / "manifest.csv")
    frame["path"] = [str(cli_data / p) for p in frame["path"]]
    number = frame["patient_id"].str[1:].astype(int)
    frame["exam"] = np.where(number % 2 == 0, "e0", "e" + frame["slice"].astype(str))
    path = tmp_path_factory.mktemp("exam_manifest") / "manifest.csv"
    frame.to_csv(path, index=False)
    return path


def test_predict_level_patient_writes_each_patient_s_mean_beside_the_same_per_image_csv(
    cli_run, exam_manifest, tmp_path, capsys
):
    plain, levelled = tmp_path / "plain.csv", tmp_path / "levelled.csv"
    common = ["predict", str(cli_run), str(exam_manifest), "--patient-col", "patient_id"]
    assert main([*common, "--out", str(plain)]) == 0
    assert main([*common, "--out", str(levelled), "--level", "patient"]) == 0
    assert plain.read_bytes() == levelled.read_bytes()  # the per-image CSV is the same
    images = pd.read_csv(levelled, dtype={"patient_id": str})
    units = pd.read_csv(tmp_path / "levelled-patient.csv", dtype={"patient_id": str})
    columns = [c for c in images.columns if c.startswith("p_")]
    reference = images.groupby("patient_id")[columns].mean()
    units = units.set_index("patient_id").loc[reference.index]
    np.testing.assert_allclose(units[columns].to_numpy(), reference.to_numpy(), atol=1e-6)
    assert units["n_slices"].tolist() == images.groupby("patient_id").size().loc[reference.index].tolist()
    assert units["predicted"].tolist() == [c[2:] for c in reference.idxmax(axis=1)]
    assert "patients (mean of their images)" in capsys.readouterr().out


def test_predict_level_exam_groups_by_patient_and_exam(cli_run, exam_manifest, tmp_path):
    out = tmp_path / "p.csv"
    argv = ["predict", str(cli_run), str(exam_manifest), "--patient-col", "patient_id", "--out", str(out)]
    assert main([*argv, "--level", "exam", "--exam-col", "exam"]) == 0
    images = pd.read_csv(out, dtype={"patient_id": str})
    images["exam_id"] = pd.read_csv(exam_manifest)["exam"]
    columns = [c for c in images.columns if c.startswith("p_")]
    reference = images.groupby(["patient_id", "exam_id"])[columns].mean()
    units = pd.read_csv(tmp_path / "p-exam.csv", dtype={"patient_id": str}).set_index(["patient_id", "exam_id"])
    assert len(units) == len(reference) == 18  # 6 patients in one exam, 6 in two
    np.testing.assert_allclose(units.loc[reference.index, columns].to_numpy(), reference.to_numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--level", "exam"], "--level exam needs exam ids"),
        (["--aggregate", "max"], "--aggregate and --exam-col go with --level"),
        (["--level", "exam", "--exam-col", "nope"], "--exam-col: column 'nope' not found"),
    ],
)
def test_predict_level_refusals_come_before_tensorflow_in_one_line(
    cli_run, exam_manifest, tmp_path, capsys, extra, expected
):
    assert main(["predict", str(cli_run), str(exam_manifest), "--out", str(tmp_path / "p.csv"), *extra]) == 2
    (line,) = _error_lines(capsys)
    assert expected in line
    assert not (tmp_path / "p.csv").exists()


def test_predict_level_refuses_max_of_four_classes_in_one_line(cli_run, exam_manifest, tmp_path, capsys):
    argv = ["predict", str(cli_run), str(exam_manifest), "--patient-col", "patient_id", "--out", str(tmp_path / "p")]
    assert main([*argv, "--level", "patient", "--aggregate", "max"]) == 2
    (line,) = _error_lines(capsys)
    assert "--level patient --aggregate max" in line
    assert list(tmp_path.iterdir()) == []  # refused before the per-image CSV is written


# -- train / evaluate --label-cols -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_label_run(cli_data, tiny_config, tmp_path_factory):
    """cli_data as a multi-label manifest (tumour: any tumour; glioma), trained by the command."""
    root = tmp_path_factory.mktemp("multi_label")
    frame = pd.read_csv(cli_data / "manifest.csv")
    frame["path"] = [str(cli_data / p) for p in frame["path"]]
    frame["tumour"] = (frame["label"] != "no_tumor").astype(int)
    frame["glioma"] = (frame["label"] == "glioma").astype(int)
    manifest = root / "labels.csv"
    frame.drop(columns=["label"]).to_csv(manifest, index=False)
    out = root / "run"
    argv = ["train", str(manifest), "--label-cols", "tumour", "glioma", "--out", str(out), *_tiny(tiny_config)]
    assert main(argv) == 0
    return manifest, out


def test_train_label_cols_trains_one_sigmoid_per_label(multi_label_run):
    import keras

    from radtransfer.training.run_folder import load_trained

    manifest, out = multi_label_run
    model = load_trained(out)
    assert model.output_shape[-1] == 2
    assert model.layers[-1].activation is keras.activations.sigmoid
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["multi_label"] is True and metrics["labels"] == ["tumour", "glioma"]
    assert "label_cols" in json.loads((out / "cli_config.json").read_text())
    test = pd.read_csv(out / "split_test.csv")  # one 0/1 column per label, read back as the manifest's
    truth = pd.read_csv(manifest).set_index("path").loc[test["path"], ["tumour", "glioma"]]
    np.testing.assert_array_equal(test[["tumour", "glioma"]].to_numpy(), truth.to_numpy())


def test_evaluate_label_cols_scores_each_label(multi_label_run, tmp_path, capsys):
    manifest, out = multi_label_run
    result = tmp_path / "metrics.json"
    argv = ["evaluate", str(out), str(manifest), "--label-cols", "tumour", "glioma", "--bootstrap", "0"]
    assert main([*argv, "--out", str(result)]) == 0
    metrics = json.loads(result.read_text())
    truth = pd.read_csv(manifest)[["tumour", "glioma"]].to_numpy()
    probabilities = np.asarray(metrics["predictions"]["probabilities"])
    assert probabilities.shape == (len(truth), 2) and ((probabilities >= 0) & (probabilities <= 1)).all()
    np.testing.assert_array_equal(np.asarray(metrics["predictions"]["y_true"]), truth)
    for k, label in enumerate(("tumour", "glioma")):
        assert metrics["per_label_auc"][label] == pytest.approx(roc_auc_score(truth[:, k], probabilities[:, k]))


def test_evaluate_label_cols_reads_the_run_s_own_split(multi_label_run, capsys):
    _, out = multi_label_run
    argv = ["evaluate", str(out), str(out / "split_test.csv"), "--label-cols", "tumour", "glioma", "--bootstrap", "0"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    test = json.loads((out / "test_metrics.json").read_text())
    assert printed["auc"] == pytest.approx(test["auc"], nan_ok=True) and printed["n"] == test["n"]


def test_label_cols_on_a_class_folder_is_refused_in_one_line(cli_data, tmp_path, capsys):
    argv = ["train", str(cli_data / "images"), "--label-cols", "a", "b", "--weights", "none", "--out", str(tmp_path)]
    assert main(argv) == 2
    (line,) = _error_lines(capsys)
    assert "--label-cols needs a CSV manifest" in line and str(cli_data / "images") in line


# -- grid --shortcut ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_class_csv(tmp_path_factory):
    """24 synthetic patients, one slice each, 32 px, of which the no-tumour and glioma ones (two classes)."""
    import radtransfer as rt

    root = tmp_path_factory.mktemp("two_class")
    manifest = rt.datasets.synthetic_brain_mri(root, n_patients=24, slices_per_patient=1, image_size=32, seed=3)
    frame = pd.read_csv(manifest)
    frame = frame[frame["label"].isin(["no_tumor", "glioma"])]
    path = root / "two.csv"
    frame.assign(path=[str(root / p) for p in frame["path"]]).to_csv(path, index=False)
    return path


def test_grid_shortcut_writes_the_shortcut_table(two_class_csv, tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["grid", str(two_class_csv), "--out", str(out), "--sources", "none", "--shortcut", "1", "--no-audit"]
    argv += ["--max-scenarios", "1", "--epochs", "1", "--image-size", "32", "--batch-size", "8", "--run-eagerly"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "shortcut.csv")
    assert len(table) == 1 and table["runs"].tolist() == [1] and table["share"].tolist() == [1.0]
    (npz,) = out.rglob("shortcut.npz")
    with np.load(npz) as arrays:
        y_true = arrays["y_true"]
        aucs = {v: roc_auc_score(y_true, arrays[v][:, 1]) for v in ("marked", "clean", "reversed")}
    for version, auc in aucs.items():
        assert table[f"auc_{version}"].iloc[0] == pytest.approx(auc)
    assert table["drop_reversed"].iloc[0] == pytest.approx(aucs["marked"] - aucs["reversed"])
    assert (out / "shortcut.md").exists() and "shortcut test of 1 arm(s)" in printed
    assert f"AUC marked {aucs['marked']:.3f}" in printed


@pytest.mark.parametrize("share, expected", [("1.5", "--shortcut 1.5: expected"), ("1", "--shortcut needs two")])
def test_grid_shortcut_refusals_in_one_line(cli_data, two_class_csv, tmp_path, capsys, share, expected):
    data = two_class_csv if share == "1.5" else cli_data
    assert main(["grid", str(data), "--out", str(tmp_path / "g"), "--shortcut", share, "--sources", "none"]) == 2
    (line,) = _error_lines(capsys)
    assert expected in line
    assert not (tmp_path / "g").exists()
