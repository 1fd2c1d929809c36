"""Patient- and exam-level evaluation: metrics over units against a hand aggregation (pandas groupby, scikit-learn),
the threshold chosen on validation units, the bootstrap over patients, exam ids kept by the image set, the
refusals, and the command line. Most tests feed predictions; one trained two-class model (module-scoped) and the
session's ``cli_run`` cover evaluate and the command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

import radtransfer as rt
from radtransfer.cli import main
from radtransfer.evaluation import Aggregation, Predictions, metrics_at_level, metrics_from_predictions

from conftest import tiny_model, train_tiny


def _two_class(seed=0, patients=24, exams=2, slices=3):
    """Per image: label (one per patient), probabilities, patient and exam ids; exams of a patient share its label."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        label = p % 2
        for e in range(exams):
            for _ in range(slices):
                rows.append((label, float(np.clip(0.25 * label + 0.75 * rng.random(), 0, 1)), f"P{p}", f"E{e}"))
    frame = pd.DataFrame(rows, columns=["label", "p1", "patient", "exam"])
    probabilities = np.stack([1 - frame["p1"], frame["p1"]], axis=1)
    return frame, Predictions(frame["label"].to_numpy(), probabilities, frame["patient"], frame["exam"])


HAND = {
    "mean": lambda p: p.mean(),
    "max": lambda p: p.max(),
    "noisy_or": lambda p: 1 - np.prod(1 - p),
}


@pytest.mark.parametrize("aggregate", ["mean", "max", "noisy_or"])
@pytest.mark.parametrize("level", ["patient", "exam"])
def test_unit_metrics_match_a_hand_aggregation(level, aggregate):
    frame, predictions = _two_class()
    keys = ["patient"] if level == "patient" else ["patient", "exam"]
    hand = frame.groupby(keys, sort=False).agg(label=("label", "first"), score=("p1", HAND[aggregate]))
    result = metrics_at_level(predictions, Aggregation(level, aggregate), bootstrap=0)
    assert result["level"] == level and result["aggregate"] == aggregate
    assert result["n_units"] == len(hand) and result["n"] == len(frame)
    assert result["auc"] == pytest.approx(roc_auc_score(hand["label"], hand["score"]))
    assert result["accuracy"] == pytest.approx(((hand["score"] >= 0.5) == hand["label"]).mean())
    assert np.allclose(np.array(result["predictions"]["probabilities"])[:, 1], hand["score"])
    assert result["predictions"]["n_slices"] == [3 * (2 if level == "patient" else 1)] * len(hand)


def test_mean_of_four_classes_averages_the_vectors():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 6)
    patients = [f"P{i // 2}" for i in range(len(labels))]
    probabilities = rng.dirichlet(np.ones(4), size=len(labels))
    frame = pd.DataFrame(probabilities, columns=list("abcd")).assign(label=labels, patient=patients)
    hand = frame.groupby("patient", sort=False).mean()
    result = metrics_at_level(Predictions(labels, probabilities, patients), Aggregation("patient"), bootstrap=0)
    expected = roc_auc_score(hand["label"], hand[list("abcd")].to_numpy(), multi_class="ovr")
    assert result["auc"] == pytest.approx(expected) and result["n_units"] == 12


def test_image_level_is_metrics_from_predictions():
    _, predictions = _two_class()
    at_level = metrics_at_level(predictions, Aggregation(), bootstrap=50)
    plain = metrics_from_predictions(
        predictions.y_true, predictions.probabilities, patient_ids=predictions.patient_ids, bootstrap=50
    )
    assert json.dumps(at_level, sort_keys=True) == json.dumps(plain, sort_keys=True)
    assert "level" not in at_level


@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_threshold_is_chosen_on_validation_units(aggregate):
    frame, predictions = _two_class(seed=2)
    val_frame, val = _two_class(seed=3)
    keys = ["patient", "exam"]
    hand_val = val_frame.groupby(keys, sort=False).agg(label=("label", "first"), score=("p1", HAND[aggregate]))
    fpr, tpr, thresholds = roc_curve(hand_val["label"], hand_val["score"])
    youden = min(thresholds[np.argmax(tpr - fpr)], 1.0)
    result = metrics_at_level(predictions, Aggregation("exam", aggregate), val=val, bootstrap=0)
    point = result["operating_point"]
    assert point["threshold"] == pytest.approx(youden) and point["chosen_on"] == "validation"
    assert result["threshold_level"] == "exam"
    hand = frame.groupby(keys, sort=False).agg(label=("label", "first"), score=("p1", HAND[aggregate]))
    called = hand["score"] >= youden
    assert point["sensitivity"] == pytest.approx(called[hand["label"] == 1].mean())
    assert point["specificity"] == pytest.approx((~called)[hand["label"] == 0].mean())


def test_an_image_level_threshold_is_said_to_be_one():
    _, predictions = _two_class()
    image_threshold = rt.evaluation.OperatingThreshold(0.4, "validation")
    with pytest.warns(UserWarning, match="chosen on validation images, not exams.*Give val="):
        result = metrics_at_level(predictions, Aggregation("exam"), threshold=image_threshold, bootstrap=0)
    assert result["threshold_level"] == "image" and result["operating_point"]["threshold"] == 0.4


def test_exam_level_bootstrap_resamples_patients():
    frame, predictions = _two_class(patients=20, exams=2)
    result = metrics_at_level(predictions, Aggregation("exam"), bootstrap=200, seed=0)
    assert result["auc_ci_unit"] == "patient" and result["auc_ci_units"] == 20 and result["n_units"] == 40
    assert result["n_patients"] == 20
    # The same exams taken as independent (each its own patient): 40 units, another interval.
    alone = Predictions(predictions.y_true, predictions.probabilities, frame["patient"] + "/" + frame["exam"])
    independent = metrics_at_level(alone, Aggregation("patient"), bootstrap=200, seed=0)
    assert independent["auc"] == pytest.approx(result["auc"]) and independent["auc_ci_units"] == 40
    assert independent["auc_ci"] != result["auc_ci"]
    # Without patient ids the exams are the units, and said to be.
    exams_only = Predictions(predictions.y_true, predictions.probabilities, None, alone.patient_ids)
    assert metrics_at_level(exams_only, Aggregation("exam"), bootstrap=50)["auc_ci_unit"] == "exam"


def test_refusals():
    frame, predictions = _two_class()
    no_exams = Predictions(predictions.y_true, predictions.probabilities, predictions.patient_ids)
    with pytest.raises(ValueError, match=r"^level='exam' needs exam ids: .*exam_col=") as info:
        metrics_at_level(no_exams, Aggregation("exam"), bootstrap=0)
    assert "\n" not in str(info.value)
    labels = predictions.y_true.copy()
    labels[1] = 1 - labels[1]  # P0's first exam: one slice of the other class
    mixed = Predictions(labels, predictions.probabilities, predictions.patient_ids, predictions.exam_ids)
    with pytest.raises(ValueError, match=r"^The images of exam 'E0' of patient 'P0' are labelled \['0', '1'\]"):
        metrics_at_level(mixed, Aggregation("exam"), bootstrap=0)
    four = Predictions(np.arange(8) % 4, np.full((8, 4), 0.25), [f"P{i}" for i in range(8)])
    with pytest.raises(ValueError, match=r"^aggregate='max' is defined for two classes .* use aggregate='mean'\.$"):
        metrics_at_level(four, Aggregation("patient", "max"), bootstrap=0)
    with pytest.raises(ValueError, match="level"):
        Aggregation("study")


def test_exam_ids_survive_split_subset_and_kfold(tmp_path):
    rows = [(f"x{i}.png", i % 2 if i < 40 else 0, f"P{i // 4}", f"E{i // 2}") for i in range(48)]
    pd.DataFrame(rows, columns=["path", "label", "patient", "exam"]).to_csv(tmp_path / "m.csv", index=False)
    image_set = rt.data.from_csv(tmp_path / "m.csv", image_col="path", patient_col="patient", exam_col="exam")
    exam_of = dict(zip(image_set.paths, image_set.exam_ids))
    parts = [*image_set.split(seed=1), image_set.subset([5, 3]), *next(image_set.kfold(k=3))]
    for part in parts:
        assert [exam_of[p] for p in part.paths] == list(part.exam_ids)
    assert rt.data.from_csv(tmp_path / "m.csv", image_col="path", patient_col="patient").exam_ids is None


@pytest.fixture(scope="module")
def trained_two_class(two_class_splits):
    model = tiny_model(classes=2)
    train_tiny(model, two_class_splits, epochs=1)
    return model


def test_evaluate_at_patient_level(trained_two_class, two_class_splits):
    _, val, test = two_class_splits
    image = rt.evaluate(trained_two_class, test, bootstrap=0)
    frame = pd.DataFrame(
        {"patient": test.patient_ids, "label": test.labels, "p": np.array(image["predictions"]["probabilities"])[:, 1]}
    )
    hand = frame.groupby("patient", sort=False).agg(label=("label", "first"), p=("p", "max"))
    result = rt.evaluate(trained_two_class, test, bootstrap=0, level="patient", aggregate="max", val=val)
    assert result["auc"] == pytest.approx(roc_auc_score(hand["label"], hand["p"]))
    assert result["n_units"] == len(hand) and result["threshold_level"] == "patient"
    with pytest.warns(UserWarning, match="not patients"):
        carried = rt.evaluate(trained_two_class, test, bootstrap=0, aggregation=Aggregation("patient"))
    assert carried["threshold_level"] == "image"
    with pytest.raises(ValueError, match="^level='exam' needs exam ids"):
        rt.evaluate(trained_two_class, test, bootstrap=0, level="exam")


def test_command_line_exam_level(cli_run, cli_data, tmp_path, capsys):
    manifest = cli_data / "manifest.csv"
    image_json, exam_json = tmp_path / "image.json", tmp_path / "exam.json"
    assert main(["evaluate", str(cli_run), str(manifest), "--bootstrap", "0", "--out", str(image_json)]) == 0
    argv = ["evaluate", str(cli_run), str(manifest), "--bootstrap", "0", "--level", "exam", "--exam-col", "slice"]
    assert main([*argv, "--out", str(exam_json)]) == 0
    image, exam = json.loads(image_json.read_text()), json.loads(exam_json.read_text())
    assert "level" not in image and exam["level"] == "exam" and exam["aggregate"] == "mean"
    frame = pd.read_csv(manifest).assign(label_index=image["predictions"]["y_true"])
    probabilities = np.array(image["predictions"]["probabilities"])
    columns = [f"c{i}" for i in range(probabilities.shape[1])]
    frame[columns] = probabilities
    hand = frame.groupby(["patient_id", "slice"], sort=False).agg(
        {"label_index": "first", **dict.fromkeys(columns, "mean")}
    )
    assert exam["n_units"] == len(hand) == 24 and exam["n_patients"] == 12
    assert exam["auc"] == pytest.approx(roc_auc_score(hand["label_index"], hand[columns].to_numpy(), multi_class="ovr"))
    capsys.readouterr()
    assert main([*argv[:-4], "--level", "exam"]) == 2
    assert "--level exam needs exam ids: give the CSV column that holds them as --exam-col." in capsys.readouterr().err
    assert main([*argv, "--aggregate", "max"]) == 2
    assert "DATA: --aggregate max is defined for two classes" in capsys.readouterr().err


@pytest.mark.parametrize("aggregate", ["mean", "noisy_or"])
def test_unit_rows_of_predict_table(aggregate):
    from radtransfer.evaluation import unit_rows

    frame, predictions = _two_class(patients=4, exams=2, slices=2)
    table = pd.DataFrame({"path": [f"x{i}.png" for i in range(len(frame))], "patient_id": frame["patient"]})
    table["p_neg"], table["p_pos"] = predictions.probabilities[:, 0], predictions.probabilities[:, 1]
    table.loc[0, ["p_neg", "p_pos"]] = np.nan  # an image that could not be read: left out
    rows = unit_rows(table, "exam", aggregate, exam_ids=frame["exam"])
    kept = frame.iloc[1:]
    hand = kept.groupby(["patient", "exam"], sort=False).agg(n=("p1", "size"), score=("p1", HAND[aggregate]))
    assert rows["n_slices"].tolist() == hand["n"].tolist() and rows["exam_id"].tolist() == ["E0", "E1"] * 4
    assert np.allclose(rows["p_pos"], hand["score"]) and np.allclose(rows["p_neg"], 1 - hand["score"])
    assert rows["predicted"].tolist() == ["pos" if s >= 0.5 else "neg" for s in hand["score"]]
    assert len(unit_rows(table, "patient")) == 4
