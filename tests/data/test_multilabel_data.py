"""Multi-label manifests: from_csv(..., label_cols=) reads 0/1 columns into multi-hot rows, kept through split,
kfold and subset, and fed to training as multi-hot float labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import radtransfer as rt
from radtransfer.errors import DataSourceError

LABELS = ["effusion", "edema", "nodule"]


def manifest(tmp_path, n_patients=12, per_patient=2, seed=0):
    """A CSV of tiny PNGs with three 0/1 label columns and patient ids; returns (path, the label matrix written)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for p in range(n_patients):
        for s in range(per_patient):
            name = f"p{p}_s{s}.png"
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / name)
            row = rng.integers(0, 2, len(LABELS))
            truth.append(row)
            rows.append({"file": name, "patient": f"P{p:02d}", **dict(zip(LABELS, row.tolist()))})
    path = tmp_path / "findings.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, np.array(truth)


def test_label_columns_round_trip_exactly(tmp_path):
    path, truth = manifest(tmp_path)
    image_set = rt.data.from_csv(path, image_col="file", label_cols=LABELS, patient_col="patient")
    assert image_set.multi_label and image_set.class_names == tuple(LABELS)
    np.testing.assert_array_equal(image_set.labels, truth)
    assert image_set.class_counts() == truth.sum(axis=0).tolist()
    np.testing.assert_array_equal(image_set.targets(), truth.astype(np.float32))
    assert image_set.label_strings()[0] == "|".join(c for c, on in zip(LABELS, truth[0]) if on)


def test_split_kfold_subset_keep_patients_whole_and_rows_exact(tmp_path):
    path, _ = manifest(tmp_path, n_patients=20)
    image_set = rt.data.from_csv(path, image_col="file", label_cols=LABELS, patient_col="patient")
    row_of = {p: tuple(r) for p, r in zip(image_set.paths, image_set.labels)}
    parts = image_set.split(val=0.2, test=0.2, by="patient", seed=1)
    assert sum(len(p) for p in parts) == len(image_set)
    patients = [set(p.patient_ids) for p in parts]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    for part in parts:
        assert part.multi_label and part.class_names == tuple(LABELS)
        assert all(row_of[p] == tuple(r) for p, r in zip(part.paths, part.labels))
    for train, val, test in image_set.kfold(4, by="patient", seed=0):
        assert not set(test.patient_ids) & (set(train.patient_ids) | set(val.patient_ids))
        assert test.labels.shape[1] == len(LABELS)
    sub = image_set.subset([3, 1])
    np.testing.assert_array_equal(sub.labels, image_set.labels[[3, 1]])


def test_make_dataset_feeds_multi_hot_float_labels(tmp_path):
    path, truth = manifest(tmp_path, n_patients=3)
    image_set = rt.data.from_csv(path, image_col="file", label_cols=LABELS, patient_col="patient")
    dataset = rt.data.make_dataset(image_set, image_size=(8, 8), batch_size=32, shuffle=False, cache=False)
    labels = np.concatenate([np.asarray(y) for _, y in dataset])
    assert labels.dtype == np.float32
    np.testing.assert_array_equal(labels, truth)


def test_refusals_are_one_line(tmp_path):
    path, _ = manifest(tmp_path, n_patients=2)
    frame = pd.read_csv(path)
    frame.loc[1, "edema"] = 2
    frame.to_csv(tmp_path / "bad.csv", index=False)
    cases = [
        (DataSourceError, dict(path_or_dataframe=tmp_path / "bad.csv", label_cols=LABELS)),
        (DataSourceError, dict(path_or_dataframe=path, label_cols=["effusion", "edemma"])),
        (ValueError, dict(path_or_dataframe=path, label_cols="effusion")),
        (ValueError, dict(path_or_dataframe=path, label_cols=LABELS, class_names=LABELS)),
    ]
    for error, keywords in cases:
        with pytest.raises(error) as caught:
            rt.data.from_csv(image_col="file", patient_col="patient", **keywords)
        assert "\n" not in str(caught.value)
    assert "line 3" in _message(tmp_path / "bad.csv")


def _message(path):
    with pytest.raises(DataSourceError) as caught:
        rt.data.from_csv(path, image_col="file", label_cols=LABELS, patient_col="patient")
    return str(caught.value)


def test_a_two_label_set_is_refused_where_one_class_per_image_is_meant(tmp_path):
    """Two labels look like two classes by count: the shortcut marker (which would mark by flattened multi-hot rows)
    and a softmax model's evaluation (which would argmax the rows) refuse the set in one line, before any reading;
    a single-label set still reads as one-hot rows (the pipeline one-hots its integer labels per element)."""
    from radtransfer.data import plant_marker
    from radtransfer.errors import ClassMismatchError

    path, _ = manifest(tmp_path, n_patients=3)
    two = rt.data.from_csv(path, image_col="file", label_cols=LABELS[:2], patient_col="patient")
    assert two.multi_label and two.num_classes == 2
    with pytest.raises(ValueError, match="multi-label") as caught:
        plant_marker(two)
    assert "\n" not in str(caught.value)
    softmax = rt.build_model("test_tiny", weights=None, num_classes=2, input_shape=(32, 32, 3))
    with pytest.raises(ClassMismatchError, match="one class per image \\(softmax\\); the data is multi-label"):
        rt.evaluate(softmax, two)
    single = rt.data.from_csv(path, image_col="file", label_col="effusion", patient_col="patient")
    dataset = rt.data.make_dataset(single, image_size=(8, 8), batch_size=32, shuffle=False, cache=False)
    labels = np.concatenate([np.asarray(y) for _, y in dataset])
    np.testing.assert_array_equal(labels, np.eye(2, dtype=np.float32)[single.labels])
