"""The data audit: each planted finding is found, exactly once, and a clean set gives none."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import radtransfer as rt
from radtransfer import data
from radtransfer.data.audit import KINDS, perceptual_hashes


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """240 distinct 8-bit images (60 synthetic patients, 4 slices each), split by patient."""
    root = tmp_path_factory.mktemp("audit_clean")
    rt.datasets.synthetic_brain_mri(root, n_patients=60, slices_per_patient=4, image_size=96, seed=1, bit_depth=8)
    image_set = data.from_csv(root / "manifest.csv", image_col="path", label_col="label", patient_col="patient_id")
    return root, image_set.split(val=0.15, test=0.2, seed=3)


def test_a_clean_split_has_no_findings(clean):
    _, (train, val, test) = clean
    report = data.audit({"train": train, "val": val, "test": test})
    assert report.findings == []
    assert report.images == 240
    # The hash alone would have flagged pairs of different patients; the thumbnails cleared every one.
    assert report.candidates > 0
    assert report.counts["test"]["images"] == len(test)
    assert report.counts["train"]["patients"] == len(set(train.patient_ids))
    assert sum(report.counts["val"]["classes"].values()) == len(val)


def _jpeg(array, quality):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return Image.open(buffer)


def test_each_planted_finding_is_found_exactly(clean, tmp_path):
    root, (train, val, test) = clean
    planted = tmp_path / "planted"
    shutil.copytree(root / "images", planted)
    rows = {"train": [], "val": [], "test": []}
    for name, part in (("train", train), ("val", val), ("test", test)):
        for path, label, patient in zip(part.paths, part.labels, part.patient_ids):
            moved = planted / Path(path).relative_to(root / "images")
            rows[name].append((str(moved), part.class_names[label], patient))
    names = sorted({r[1] for r in rows["train"]})
    source, cls, _ = rows["train"][0]
    pixels = np.asarray(Image.open(source))
    other_class = next(c for c in names if c != cls)

    def add(part, file, label, patient):
        rows[part].append((str(file), label, patient))

    # duplicate across parts (same pixels, another format) and a duplicate within one part (a warning)
    Image.fromarray(pixels).save(planted / "copy_of_train0.bmp")
    add("test", planted / "copy_of_train0.bmp", cls, "P-dup")
    second, cls2, patient2 = rows["train"][5]
    shutil.copyfile(second, planted / "again.png")
    add("train", planted / "again.png", cls2, patient2)
    # near duplicates across parts: JPEG at quality 60, and resized with brightness and contrast changed
    third, cls3, _ = rows["train"][9]
    _jpeg(np.asarray(Image.open(third)), 60).save(planted / "reencoded.png")
    add("val", planted / "reencoded.png", cls3, "P-near1")
    fourth, cls4, _ = rows["train"][13]
    changed = np.clip(np.asarray(Image.open(fourth), dtype=np.float32) * 1.1 + 12, 0, 255).astype(np.uint8)
    Image.fromarray(changed).resize((80, 80), Image.Resampling.BILINEAR).save(planted / "resized.png")
    add("test", planted / "resized.png", cls4, "P-near2")
    # a label conflict: the same picture in the same part under another class
    fifth, cls5, patient5 = rows["train"][17]
    Image.fromarray(np.asarray(Image.open(fifth))).save(planted / "relabelled.bmp")
    add("train", planted / "relabelled.bmp", next(c for c in names if c != cls5), patient5)
    # a patient in two parts
    leaked = rows["val"][0][2]
    leak_source = rows["test"][0][0]
    add("val", leak_source.replace(".png", "_leak.png"), rows["test"][0][1], rows["test"][0][2])
    shutil.copyfile(leak_source, leak_source.replace(".png", "_leak.png"))
    # an empty (all-black) slice and an unreadable file
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(planted / "black.png")
    add("train", planted / "black.png", other_class, "P-black")
    (planted / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    add("val", planted / "broken.png", other_class, "P-broken")

    parts = {name: _image_set(part_rows, names) for name, part_rows in rows.items()}
    report = data.audit(parts)
    found = {}
    for finding in report.findings:
        found.setdefault(finding.kind, []).append(finding)
    summary = {kind: len(found.get(kind, [])) for kind in KINDS}
    # the leaked copy is also a cross-part duplicate of the test image it copies
    assert summary == {
        "duplicate": 4,
        "near_duplicate": 2,
        "label_conflict": 1,
        "patient_leak": 1,
        "empty_image": 1,
        "unreadable": 1,
    }, report.table()
    by_file = {f.kind + ":" + Path(f.paths[-1]).name: f for f in report.findings}
    cross = next(f for f in found["duplicate"] if str(planted / "copy_of_train0.bmp") in f.paths)
    assert cross.severity == "error" and cross.parts == ("test", "train")
    within = next(f for f in found["duplicate"] if str(planted / "again.png") in f.paths)
    assert within.severity == "warning" and within.parts == ("train",)
    near_files = {Path(p).name for f in found["near_duplicate"] for p in f.paths}
    assert {"reencoded.png", "resized.png"} <= near_files
    assert all(f.severity == "error" for f in found["near_duplicate"])
    conflict = found["label_conflict"][0]
    assert str(planted / "relabelled.bmp") in conflict.paths and len(conflict.classes) == 2
    assert found["patient_leak"][0].parts == ("test", "val") and leaked != rows["test"][0][2]
    assert found["empty_image"][0].severity == "warning" and found["unreadable"][0].severity == "warning"
    assert by_file  # every finding names its files
    # the JSON: exactly the keys and kind names
    written = json.loads(report.write_json(tmp_path / "audit.json").read_text())
    assert all(set(f) == {"kind", "severity", "paths", "parts", "classes", "detail"} for f in written)
    assert {f["kind"] for f in written} == set(KINDS)
    assert "error" in report.table() and "near_duplicate" in report.table()


def _image_set(rows, names):
    from radtransfer.data import ImageSet

    return ImageSet(
        paths=[r[0] for r in rows],
        labels=np.array([names.index(r[1]) for r in rows], dtype=np.int64),
        class_names=tuple(names),
        patient_ids=[r[2] for r in rows],
    )


def test_perceptual_hash_matches_imagehash_algorithm():
    """The hash is ImageHash's phash (DCT-II of a 32x32 thumbnail, 8x8 lowest frequencies above their median),
    checked against a direct per-coefficient DCT formula."""
    rng = np.random.default_rng(0)
    thumb = rng.normal(size=(32, 32))
    k = np.arange(32)
    basis = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 64)  # basis[u, x]
    coefficients = (basis @ thumb @ basis.T)[:8, :8].ravel()
    expected = coefficients > np.median(coefficients)
    bits = np.unpackbits(perceptual_hashes(thumb[None]).view(np.uint8), bitorder="little")
    assert np.array_equal(bits.astype(bool), expected)


def test_folds_are_audited_reading_each_image_once(clean, tmp_path, monkeypatch):
    import sys

    audit_module = sys.modules["radtransfer.data.audit"]  # data.audit is the function

    root, (train, val, test) = clean
    image_set = train
    copy = tmp_path / "copy.bmp"
    Image.open(image_set.paths[0]).save(copy)  # the same picture under another patient
    rows = list(zip(image_set.paths, image_set.labels, image_set.patient_ids)) + [
        (str(copy), image_set.labels[0], "P-other")
    ]
    names = list(image_set.class_names)
    planted = _image_set([(p, names[label], patient) for p, label, patient in rows], names)
    reads = []
    original = audit_module._read
    monkeypatch.setattr(audit_module, "_read", lambda path, frame: reads.append(path) or original(path, frame))
    reports = data.audit_folds(planted, k=3, seed=0)
    assert len(reports) == 3 and len(reads) == len(planted)
    kinds = [sorted({f.kind for f in report.findings}) for report in reports]
    # the copy and its source are in different parts of every fold but where they share one (never here: the
    # copy's patient is drawn apart); each fold says which parts
    crossing = [r for r in reports if r.of_kind("duplicate") and r.of_kind("duplicate")[0].severity == "error"]
    assert crossing, kinds
    assert all(set(k) <= {"duplicate"} for k in kinds)
    assert sum(r.counts["test"]["images"] for r in reports) == len(planted)
