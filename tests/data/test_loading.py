"""data.load, data.load_parts and data.check_parts: a data spec read in the library, compared with the sources and
ImageSet.split called directly; and the command reading DATA through them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from radtransfer import data
from radtransfer.data.loading import DataSpecError


def _png(path, value=0, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)
    return path


def _folder(root, classes=("a", "b"), per_class=6):
    for c, name in enumerate(classes):
        for k in range(per_class):
            _png(root / name / f"{k}.png", 30 * c + k)
    return root


def _csv(root, patients=6, slices=2):
    rows = []
    for p in range(patients):
        for s in range(slices):
            path = _png(root / "img" / f"p{p}_{s}.png", 10 * p + s)
            rows.append({"path": str(path), "label": "yes" if p % 2 else "no", "PatientID": f"P{p}"})
    manifest = root / "manifest_list.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def _same(a, b) -> None:
    assert list(a.paths) == list(b.paths)
    assert list(a.labels) == list(b.labels) and a.class_names == b.class_names
    assert (a.patient_ids is None) == (b.patient_ids is None)
    if a.patient_ids is not None:
        assert list(a.patient_ids) == list(b.patient_ids)


def test_load_reads_a_class_folder_as_from_directory(tmp_path):
    root = _folder(tmp_path / "set")
    _same(data.load(str(root)), data.from_directory(root))
    _same(data.load(str(root), patient_col="none"), data.from_directory(root, patient_ids=None))


def test_load_reads_a_csv_with_its_patients_as_from_csv(tmp_path):
    manifest = _csv(tmp_path)
    loaded = data.load(str(manifest))
    _same(loaded, data.from_csv(manifest, image_col="path", label_col="label", patient_col="auto"))
    assert len(set(loaded.patient_ids)) == 6
    _same(
        data.load(str(manifest), patient_col=None),
        data.from_csv(manifest, image_col="path", label_col="label", patient_col=None),
    )


def test_load_parts_splits_by_patient_as_image_set_split(tmp_path):
    manifest = _csv(tmp_path)
    notes = []
    parts = data.load_parts(str(manifest), 0.2, 0.3, 7, note=notes.append)
    expected = data.from_csv(manifest, image_col="path", label_col="label", patient_col="auto").split(
        val=0.2, test=0.3, seed=7, by="patient"
    )
    for got, want in zip(parts, expected):
        _same(got, want)
    assert notes == ["DATA: 12 images of 6 patients; parts are split by patient."]
    by_image = data.load_parts(str(manifest), 0.2, 0.3, 7, patient_col="none", note=notes.append)
    expected = data.from_csv(manifest, image_col="path", label_col="label", patient_col=None).split(
        val=0.2, test=0.3, seed=7, by="image"
    )
    for got, want in zip(by_image, expected):
        _same(got, want)
    assert "parts are split by image" in notes[-1]


def test_load_parts_takes_a_split_folder_s_own_parts(tmp_path):
    root = tmp_path / "brain"
    for part in ("Training", "Testing"):
        _folder(root / part)
    notes = []
    train, val, test = data.load_parts(str(root), 0.25, 0.9, 0, patient_col=None, note=notes.append)
    own = data.from_split_directory(root)
    _same(test, own["test"])  # --test is ignored: the folder's test part
    expected_train, expected_val, _ = own["train"].split(val=0.25, test=0.0, seed=0)
    _same(train, expected_train)
    _same(val, expected_val)
    assert notes and notes[0].startswith("DATA is split already")
    with_val = tmp_path / "three"
    for part in ("train", "val", "test"):
        _folder(with_val / part)
    own = data.from_split_directory(with_val)
    for got, name in zip(data.load_parts(str(with_val), note=notes.append), ("train", "val", "test")):
        _same(got, own[name])


def test_a_spec_that_names_no_data_is_refused_in_one_line(tmp_path):
    root = tmp_path / "brain"
    for part in ("Training", "Testing"):
        _folder(root / part)
    with pytest.raises(DataSpecError, match=r"is split already \(Testing/, Training/\)") as info:
        data.load(str(root))
    assert "\n" not in str(info.value) and isinstance(info.value, data.DataSourceError)
    with pytest.raises(DataSpecError, match="DATA not found: '/no/such/data'"):
        data.load("/no/such/data")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataSpecError, match="neither a folder nor a .csv file"):
        data.load(str(tmp_path / "notes.txt"))
    volumes = tmp_path / "volumes.csv"
    pd.DataFrame({"path": ["a.nii.gz", "b.nii"], "label": ["x", "y"]}).to_csv(volumes, index=False)
    with pytest.raises(DataSpecError, match="lists NIfTI volumes"):
        data.load(str(volumes))
    no_test = tmp_path / "no_test"
    for part in ("train", "val"):
        _folder(no_test / part)
    with pytest.raises(DataSpecError, match="has no test part"):
        data.load_parts(str(no_test))


def test_a_tfds_spec_goes_to_from_tfds(monkeypatch):
    from radtransfer.data import loading

    calls = []
    monkeypatch.setattr(loading, "from_tfds", lambda name, split: calls.append((name, split)) or "set")
    assert data.load("tfds:beans") == "set" and data.load("tfds:beans:test") == "set"
    assert data.load("tfds:beans", tfds_split="validation") == "set"
    assert calls == [("beans", "train"), ("beans", "test"), ("beans", "validation")]


def test_check_parts_leaves_out_bad_files_and_lists_them(tmp_path):
    root = _folder(tmp_path / "set")
    bad = root / "a" / "broken.png"
    bad.write_bytes(b"not a png")
    image_set = data.from_directory(root, patient_ids=None)
    train, val, test = image_set.split(val=0.2, test=0.2, seed=1, by="image")
    parts = {"train": train, "val": val, "test": test}
    checked, skipped = data.check_parts(parts, "skip")
    assert [(part, path) for part, path, _ in skipped] == [
        (name, str(bad)) for name, part in parts.items() if str(bad) in part.paths
    ]
    for name, part in parts.items():  # the others' split unchanged
        assert list(checked[name].paths) == [p for p in part.paths if p != str(bad)]
    with pytest.raises(data.BadImagesError, match="broken.png"):
        data.check_parts(parts, "raise")
    clean = {name: part.subset(np.flatnonzero(np.asarray(part.paths) != str(bad))) for name, part in parts.items()}
    assert data.check_parts(clean, "raise")[1] == []


def test_the_command_reads_the_parts_the_library_gives(tmp_path, capsys):
    from radtransfer.cli.commands import load_parts

    manifest = _csv(tmp_path)

    class Args:
        data = str(manifest)
        val, test, seed = 0.2, 0.3, 7
        image_col, label_col, patient_col, missing_labels = "path", "label", "auto", "raise"

    for got, want in zip(load_parts(Args), data.load_parts(str(manifest), 0.2, 0.3, 7)):
        _same(got, want)
    assert "DATA: 12 images of 6 patients; parts are split by patient." in capsys.readouterr().err
    Args.patient_col = "none"
    load_parts(Args)
    assert "DATA: 12 images; --patient-col none: parts are split by image." in capsys.readouterr().err
